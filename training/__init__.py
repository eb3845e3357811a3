"""Training, evaluation and export of DAN on 300-W.

The runbook (every command behind a published number) is in the README and in
``model/MODEL_CARD.md``; ``python -m training.train --help`` lists the options.
Evaluation of a model file (``evaluate``, reading 300-W with ``dataset`` and
scoring with ``metrics``) needs no torch, so the serving install can run it;
neither do ``augment``, ``box_statistics`` and ``arguments`` (the range-checked
argparse types of the command lines here and in ``bench``). Training and export do.
"""
