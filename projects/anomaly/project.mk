# The anomaly project's own make targets; the Makefile includes every projects/*/project.mk.
.PHONY: evaluate-traces

evaluate-traces: setup ## Train and test both anomaly models on Loghub's Event_traces.csv (TRACES=path)
	@test -n "$(TRACES)" || { echo "error: give the file: make evaluate-traces TRACES=path/to/Event_traces.csv" >&2; exit 2; }
	python -m projects.anomaly.traces --traces "$(TRACES)"
