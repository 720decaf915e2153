"""What face verification needs beyond the task interface: metric-learning losses, P×K batch sampling, pair
protocols (seeded pairs, LFW's ``pairs.txt``) and their metrics, and the enrolment gallery."""

from .lfw import lfw_protocol
from .losses import contrastive_loss, pairwise_sq_dist, triplet_semihard_loss
from .pairs import Pairs, lfw_pairs, sample_pairs, verification_metrics
from .sampling import pk_order

__all__ = [
    "Pairs",
    "contrastive_loss",
    "lfw_pairs",
    "lfw_protocol",
    "pairwise_sq_dist",
    "pk_order",
    "sample_pairs",
    "triplet_semihard_loss",
    "verification_metrics",
]
