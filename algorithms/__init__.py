"""The Llama 2 fine-tuning method's math as pure tensor functions (no Ray, no Hydra, no IO).

Shapes are in each function's docstring; sections refer to LLAMA2_SPEC.md.
"""

from algorithms.advantages import gae, kl_penalized_rewards, last_valid_index
from algorithms.core import (
    entropy_from_logits,
    masked_mean,
    masked_sum,
    shifted_token_logprobs,
    token_logprobs,
    whiten,
)
from algorithms.kl import KL_KINDS, kl_estimate, kl_k1, kl_k3
from algorithms.llama2_reward import SAFETY_THRESHOLD, combine_safety_helpfulness, llama2_reward, logit
from algorithms.ppo import ppo_policy_loss, value_loss
from algorithms.reward_model import (
    MARGINS,
    RATINGS,
    margin_for,
    pairwise_accuracy,
    pairwise_accuracy_by_rating,
    ranking_loss,
    safety_aux_loss,
)
from algorithms.selection import best_of_k, max_reward_curve
from algorithms.sft import sft_loss

__all__ = [
    # core
    "token_logprobs",
    "shifted_token_logprobs",
    "masked_sum",
    "masked_mean",
    "whiten",
    "entropy_from_logits",
    # SFT (section 4)
    "sft_loss",
    # reward models (sections 5-6)
    "RATINGS",
    "MARGINS",
    "margin_for",
    "ranking_loss",
    "safety_aux_loss",
    "pairwise_accuracy",
    "pairwise_accuracy_by_rating",
    # KL and advantages (section 8)
    "KL_KINDS",
    "kl_k1",
    "kl_k3",
    "kl_estimate",
    "last_valid_index",
    "kl_penalized_rewards",
    "gae",
    # PPO (section 8)
    "ppo_policy_loss",
    "value_loss",
    # Llama 2 reward (section 8)
    "SAFETY_THRESHOLD",
    "combine_safety_helpfulness",
    "logit",
    "llama2_reward",
    # best-of-K (section 7)
    "best_of_k",
    "max_reward_curve",
]
