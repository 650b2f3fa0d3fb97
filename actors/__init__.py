"""Ray actors: thin shells over model/ and algorithms/ (DESIGN.md "Roles").

ActorGroup places N ranks on a placement group and joins them with torch.distributed; Learner
(policy, critic, reward models), Reference (frozen pi_0 or scorer), Generator/GeneratorPool (vLLM)
and the weight sync between them. Typed batches in actors.batch cross the process boundaries.
"""

from actors.batch import PairBatch, PPOBatch, Sample, TokenBatch, pad_sequences
from actors.generator import Generator, GeneratorPool
from actors.group import ActorGroup, RankContext, setup_rank
from actors.learner import Learner
from actors.reference import Reference
from actors.weight_sync import sync_policy_to_generators

__all__ = [
    "ActorGroup",
    "Generator",
    "GeneratorPool",
    "Learner",
    "PPOBatch",
    "PairBatch",
    "RankContext",
    "Reference",
    "Sample",
    "TokenBatch",
    "pad_sequences",
    "setup_rank",
    "sync_policy_to_generators",
]
