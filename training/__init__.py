"""Training, evaluation and export of DAN on 300-W.

The runbook (every command behind a published number) is in the README and in
``model/MODEL_CARD.md``; ``python -m training.train --help`` lists the options.
"""
