"""A synthetic abdominal CT phantom: the built-in stand-in for NIH Pancreas-CT.

Each case is a contrast-enhanced abdominal CT in Hounsfield units with a pancreas label, or on
request (``PhantomConfig(labels="organs")``) a label map with one class per organ
(:data:`ORGAN_CLASSES`: pancreas, liver, spleen, left and right kidney, gallbladder, GI tract,
arteries, veins, IVC) read from the same tissue map, so that the images do not change. The
anatomy is built from analytic shapes and tubes in an "adult millimetre" frame (x towards the
patient's left, y posterior, z superior, origin at the body centre at the level of the pancreatic
neck), scaled so that the body fills about 80 % of the field of view, and rendered on the voxel
grid of the case:

* air, a body outline with subcutaneous fat, an abdominal muscle wall and visceral fat;
* liver, spleen, kidneys (cortex, medulla, sinus fat), gallbladder, lung bases and heart;
* stomach, duodenum, small-bowel loops and colon (enhancing walls, fluid, collapsed loops,
  stool and gas pockets);
* aorta, IVC, portal / superior mesenteric / splenic / renal / hepatic vessels, celiac branches;
* vertebrae (cortical shell, cancellous core, discs, posterior elements, canal), ribs, psoas and
  paraspinal muscles;
* the target: an elongated, curved, lobulated pancreas whose length, thickness, curvature, tail
  height and position vary per case, with the splenic vein in a groove on its back, the
  duodenum wrapped around its head and jejunal loops under its body, all of similar density.

The clean HU map is blurred (partial volume) and correlated Gaussian noise is added. The
``"shifted"`` domain is another "scanner": arterial phase, noisier, a global HU offset, another
resolution, and hypodense lesions inside the pancreas (labeled pancreas, as MSD merges tumour into
pancreas for evaluation).

Every case comes from its own random stream, ``numpy.random.default_rng([seed, domain number, index])``,
so that case ``k`` is the same whatever the number of cases asked for.

The package: :mod:`.parameters` (tissues, intensities, scanner presets, :class:`PhantomConfig`),
:mod:`.geometry` (grid, canvas, analytic shapes), :mod:`.anatomy` (the parameters and painting of
each structure), :mod:`.render` (one case: geometry, anatomy, intensities, noise) and
:mod:`.writing` (a resumable data set on disk).
"""

from atso_med.data.phantom.parameters import (
    DOMAINS,
    LABEL_MAPS,
    ORGAN_CLASSES,
    PHANTOM_VERSION,
    TISSUES,
    OrganClass,
    PhantomCase,
    PhantomConfig,
    case_rng,
    label_names,
)
from atso_med.data.phantom.render import best_window_dice, make_phantom_case, organ_label_map, render_phantom_case
from atso_med.data.phantom.writing import phantom_status, write_phantom_dataset

__all__ = [
    "DOMAINS",
    "LABEL_MAPS",
    "ORGAN_CLASSES",
    "PHANTOM_VERSION",
    "TISSUES",
    "OrganClass",
    "PhantomCase",
    "PhantomConfig",
    "best_window_dice",
    "case_rng",
    "label_names",
    "make_phantom_case",
    "organ_label_map",
    "phantom_status",
    "render_phantom_case",
    "write_phantom_dataset",
]
