"""`tprl-demo`: a Gradio page that shows the pruner beside the full model and a training-free method."""

from .app import PruningDemo, build_demo, launch


__all__ = ["PruningDemo", "build_demo", "launch"]
