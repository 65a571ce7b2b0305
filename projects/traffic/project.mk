# The traffic project's own make targets; the Makefile includes every projects/*/project.mk.
.PHONY: evaluate-requests analyze-traffic

evaluate-requests: setup ## Fit and score both request models on the CSIC 2010 data set (CSIC=folder of its three files)
	@test -n "$(CSIC)" || { echo "error: give the folder: make evaluate-requests CSIC=path/to/csic2010" >&2; exit 2; }
	python -m projects.traffic.csic_eval --csic "$(CSIC)"

analyze-traffic: setup ## The champion's verdicts on an access log (LOG=file; default: the services' own; OUT=report.json)
	python -m projects.traffic.analyze $(if $(LOG),--log "$(LOG)") $(if $(OUT),--out "$(OUT)")
