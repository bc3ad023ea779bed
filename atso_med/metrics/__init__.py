"""atso_med.metrics: Dice similarity per case, summarised over cases, pooled over cases; per class for label maps."""

from atso_med.metrics.class_dice import ClassDiceAccumulator
from atso_med.metrics.cumulative import GlobalDiceMetric
from atso_med.metrics.dice import DiceAccumulator, dice_score, dice_summary, global_dice
from atso_med.metrics.evaluation import EvaluationRun, evaluate_predictions, evaluation_pairs, run_evaluation
from atso_med.metrics.evaluation_report import EvaluationReport
from atso_med.metrics.pooling import pool_results

__all__ = ["DiceAccumulator", "GlobalDiceMetric", "dice_score", "dice_summary", "global_dice", "pool_results"]
__all__ += ["EvaluationReport", "EvaluationRun", "evaluate_predictions", "evaluation_pairs", "run_evaluation"]
__all__ += ["ClassDiceAccumulator"]
