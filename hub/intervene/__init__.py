"""Interventions on the residual stream: steering vectors added (or written) at a layer.

See :mod:`hub.intervene.steer`; this package's public names are re-exported here.
"""
from hub.intervene.steer import (Intervention, from_states, generate_with, mean_difference, mean_state_norm,
                                 next_token_logprobs_with, steer, token_id, unembedding_direction)

__all__ = ["Intervention", "from_states", "generate_with", "mean_difference", "mean_state_norm",
           "next_token_logprobs_with", "steer", "token_id", "unembedding_direction"]
