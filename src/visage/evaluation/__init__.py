"""Evaluation of decisions on faces: verification, calibration and their metrics, in one place.

- :mod:`~visage.evaluation.verification`: distance, threshold and calibrated P(same) of a pair of
  embeddings (:class:`Verification`, :class:`Calibration`, :func:`decide`, :func:`fit_calibration`).
- :mod:`~visage.evaluation.metrics`: one threshold sweep behind ROC, EER, FAR/FRR and TAR at a FAR,
  calibration error, and the presentation-attack rates of ISO/IEC 30107-3 (APCER, BPCER, ACER).
- :mod:`~visage.evaluation.plots`: DET, ROC and reliability plots (matplotlib, imported on use).
- :mod:`~visage.evaluation.calibration`: the Siamese pair heads, the FAR-target distance rule and
  the out-of-fold report behind ``visage calibrate`` and ``visage eval``.
- :mod:`~visage.evaluation.pairs`: labelled pairs (``img_a``, ``img_b``, ``same`` TSV) and their distances.

Training imports these modules, never the reverse: nothing here may import :mod:`visage.train`
(one call that encodes photos with trained ``.pt`` encoders still does, marked ``TODO(pipeline)``).
"""
