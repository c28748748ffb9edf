"""Faces: detection, landmarks and alignment."""
