"""The model zoo: batched per-node training, the source pool, the anchor, the zoo itself and its parameter collection.

Stage order (docs/DESIGN.md, section 5): ``data`` < ``models`` < ``zoo`` < ``prompts`` < ``diffusion`` < ``methods``
< ``evaluation`` < ``experiment`` < ``forecaster`` < ``cli``.
"""
