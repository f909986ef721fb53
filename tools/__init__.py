"""Development tools that are not installed: tiny pipelines built from configs, the shapes world
(data, detector, model, trainer), the excite step sweep and a fake OpenAI server. Tests and
benchmarks import them from the repository root (`python -m benchmarks.NAME`)."""
