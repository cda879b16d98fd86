"""Paper 004: SlowFast action detection on AVA (network, head, data, metric, synthetic clips)."""
