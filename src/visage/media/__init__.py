"""Media in and out: :mod:`.images` loads and validates images and lists folders of them;
:mod:`.video` reads, samples and probes video files.

Every failure names its input. Nothing is imported here, so ``visage.media.images`` stays free of
OpenCV, which only :mod:`.video` needs.
"""
