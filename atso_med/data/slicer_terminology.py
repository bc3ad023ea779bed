"""The 3D Slicer terminology and colour of a segment, from its class name.

Class names this package knows (``liver``, ``kidney_left``, ``gi_tract``, ``ivc``, ...) get the
SNOMED CT code and the recommended display colour of 3D Slicer's General Anatomy list, so that
Slicer shows them as the anatomy they are (a side word - ``left``, ``right`` - becomes the type's
laterality modifier where the list has one). Any other name gets no terminology and a colour of a
fixed palette, chosen by its class value.
"""

from __future__ import annotations

import re

__all__ = ["FALLBACK_COLORS", "segment_style"]

_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
_ANATOMICAL_STRUCTURE = ["SCT", "123037004", "Anatomical Structure"]
_TISSUE = ["SCT", "85756007", "Tissue"]
_SIDES = {"left": ["SCT", "7771000", "Left"], "right": ["SCT", "24028007", "Right"]}

# name -> (category, SNOMED CT code, code meaning, Slicer's display colour 0-255, has a laterality modifier)
_ANATOMY: dict[str, tuple[list[str], str, str, tuple[int, int, int], bool]] = {
    "liver": (_ANATOMICAL_STRUCTURE, "10200004", "Liver", (221, 130, 101), False),
    "spleen": (_ANATOMICAL_STRUCTURE, "78961009", "Spleen", (157, 108, 162), False),
    "pancreas": (_ANATOMICAL_STRUCTURE, "15776009", "Pancreas", (249, 180, 111), False),
    "kidney": (_ANATOMICAL_STRUCTURE, "64033007", "Kidney", (185, 102, 83), True),
    "adrenal gland": (_ANATOMICAL_STRUCTURE, "23451007", "Adrenal gland", (249, 186, 150), True),
    "gallbladder": (_ANATOMICAL_STRUCTURE, "28231008", "Gallbladder", (139, 150, 98), False),
    "aorta": (_ANATOMICAL_STRUCTURE, "15825003", "Aorta", (224, 97, 76), False),
    "artery": (_TISSUE, "275989006", "Artery", (216, 101, 79), False),
    "vein": (_TISSUE, "181378009", "Vein", (0, 151, 206), False),
    "inferior vena cava": (_ANATOMICAL_STRUCTURE, "64131007", "Inferior vena cava", (0, 151, 206), False),
    "portal vein": (_ANATOMICAL_STRUCTURE, "32764006", "Portal vein", (0, 151, 206), False),
    "esophagus": (_ANATOMICAL_STRUCTURE, "32849002", "Esophagus", (211, 171, 143), False),
    "stomach": (_ANATOMICAL_STRUCTURE, "69695003", "Stomach", (216, 132, 105), False),
    "duodenum": (_ANATOMICAL_STRUCTURE, "38848004", "Duodenum", (255, 253, 229), False),
    "small intestine": (_ANATOMICAL_STRUCTURE, "30315005", "Small Intestine", (205, 167, 142), False),
    "colon": (_ANATOMICAL_STRUCTURE, "71854001", "Colon", (204, 168, 143), False),
    # Not in Slicer's list: the SNOMED CT code, with the small bowel's colour.
    "gastrointestinal tract": (_ANATOMICAL_STRUCTURE, "122865005", "Gastrointestinal tract", (205, 167, 142), False),
    "lung": (_ANATOMICAL_STRUCTURE, "39607008", "Lung", (197, 165, 145), True),
}

# Other names of the same structures, after normalisation (lower case, words split at "_" / "-").
_SYNONYMS = {
    "kidneys": "kidney",
    "adrenal": "adrenal gland",
    "adrenal glands": "adrenal gland",
    "gall bladder": "gallbladder",
    "arteries": "artery",
    "veins": "vein",
    "ivc": "inferior vena cava",
    "vena cava": "inferior vena cava",
    "portal vein and splenic vein": "portal vein",
    "oesophagus": "esophagus",
    "small bowel": "small intestine",
    "large intestine": "colon",
    "gi tract": "gastrointestinal tract",
    "bowel": "gastrointestinal tract",
    "lungs": "lung",
}

#: Colours of the classes whose names have no entry, by class value (matplotlib's tab10 palette).
FALLBACK_COLORS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def segment_style(name: str, value: int) -> tuple[list[float], dict | None]:
    """The display colour and terminology of a class's segment.

    Args:
        name: the class name (``"liver"``, ``"kidney_left"``, ``"Portal vein"``...).
        value: the class's label value (1..C), which picks the fallback colour.

    Returns:
        ``(colour, terminology)``: RGB in [0, 1], and the terminology entry in ``slicerio``'s form
        (``None`` for a name this module does not know).
    """
    words = re.split(r"[\s_\-]+", name.strip().lower())
    side = next((word for word in words if word in _SIDES), None)
    key = " ".join(word for word in words if word not in _SIDES)
    entry = _ANATOMY.get(_SYNONYMS.get(key, key))
    if entry is None:
        rgb = FALLBACK_COLORS[(int(value) - 1) % len(FALLBACK_COLORS)]
        return [c / 255 for c in rgb], None
    category, code, meaning, rgb, lateral = entry
    terminology = {"contextName": _CONTEXT, "category": category, "type": ["SCT", code, meaning]}
    if lateral and side is not None:
        terminology["typeModifier"] = _SIDES[side]
    terminology["anatomicContextName"] = _ANATOMIC_CONTEXT
    return [c / 255 for c in rgb], terminology
