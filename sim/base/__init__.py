"""The bottom layer: what every other part of acsim may import, and which imports nothing of acsim.

``errors`` (user-facing errors), ``io`` (atomic writes), ``config`` (the typed experiment file),
``profile`` (the calibration profile schema) and ``records`` (the per-request record layout).
"""
