"""Videos and numbered frame folders through any filter: media I/O, optical flow and the resumable, coherent frame loop.

Nothing here imports a deep-learning framework; PyAV (FFmpeg) and OpenCV are
imported only when a video runs.
"""
