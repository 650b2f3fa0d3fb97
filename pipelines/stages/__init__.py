"""One driver per stage of the Llama 2 method (DESIGN.md "Stages"); each reads top to bottom.

Every driver exposes `run(cfg: Config, run: RunDir) -> dict` returning the stage's metrics; the
pipeline (`pipelines.llama2`) writes the manifest around it.
"""
