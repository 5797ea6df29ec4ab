"""paper_figures: the reports -- ``sharpen fit``'s write-up of one run and the paper's figure kinds, drawn from the
simulator's experiments or from run folders.

:mod:`paper_figures.fit_report` is the ``sharpen fit`` command: the analysis of :mod:`sharpen.run_analysis` as
``fit_summary.json``, ``fit_report.md`` and the overlay figure ``fit_overlay.png``.

One module per kind (``theory_fit``, ``rise_fall``, ``failure_modes``, ``heatmap``, ``dataset_size``,
``mcs_gain``, ``self_verification``, ``stability``), each with ``compute(run_dirs, *, cache) -> FigureData`` and
``draw(FigureData, ax(es)=None) -> Figure``; shared data helpers in :mod:`paper_figures.data`, the shared look in
:mod:`paper_figures.style`, the ``sharpen figures`` command and the demo step in :mod:`paper_figures.cli`.
"""
