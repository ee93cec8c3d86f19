demo:
	./scripts/setup.sh
	.venv/bin/python -m saladcog.cli demo

test:
	./scripts/setup.sh
	.venv/bin/python -m pytest

.PHONY: demo test
