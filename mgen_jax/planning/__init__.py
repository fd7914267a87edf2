"""Ahead-of-time plans: compile a train step for a TPU topology on any machine and report memory,
FLOPs and collectives (`mgen plan`)."""
