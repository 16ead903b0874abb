"""Why a stream stalled when it lost nothing: the sender's congestion state (sender.py)
and each collateral stall's delay split into ordering, congestion window and
application time (split.py)."""
