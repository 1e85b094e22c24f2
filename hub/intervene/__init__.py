"""Interventions on the residual stream: steering vectors added (or written) at a layer.

See :mod:`hub.intervene.steer`; this package's public names are re-exported here.
"""
from hub.intervene.directions import from_states, mean_difference, mean_state_norm, token_id, unembedding_direction
from hub.intervene.steer import Intervention, generate_with, next_token_logprobs_with, steer

__all__ = ["Intervention", "from_states", "generate_with", "mean_difference", "mean_state_norm",
           "next_token_logprobs_with", "steer", "token_id", "unembedding_direction"]
