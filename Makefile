# The front door: every command a person types is a target here. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_DISABLE_TELEMETRY := 1

SOURCE ?=
LIMIT ?= 1000
DIR ?= data/models/clip-random
SIZE ?= tiny
# bench-store SIZE=...: the index quantizations compared side by side.
QUANT ?= bf16,i8,f32
PYTEST_ARGS ?=
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup up down restart status logs demo demo-offline ingest reembed search lint test test-unit test-integration test-e2e screenshot test-hostile test-faults random-model index conformance bench bench-embedder bench-store bench-ingest bench-rerun bench-search bench-folder-memory bench-formats eval eval-download clean backup restore bench-backup bench-reembed bench-lexical

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is needed (set PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned (2.13.0); pip takes a CPU build from local wheels where present.
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

.env:
	sed "s/__DEV_KEY__/dev-$$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')/" .env.example > .env
	@echo "wrote .env with a development API key"

setup: $(STAMP) .env ## create the virtual environment with every service's dependencies, and .env

up: setup ## start every service that is not running yet, as its own process (logs in logs/, pids in run/)
	$(PY) -m tools.stack up

restart: setup ## stop and start one service: make restart SERVICE=store|embedder|worker|api|ui
	@test -n "$(SERVICE)" || { echo "usage: make restart SERVICE=name (store, embedder, worker, api, ui)"; exit 2; }
	$(PY) -m tools.stack restart "$(SERVICE)"

down: ## stop every service started by make up / make demo
	@test -x $(PY) && $(PY) -m tools.stack down || echo "nothing to stop (no venv)"

status: ## a table of the stack: each service's state, health and address, the ingest backlog, photos, index, model
	@test -x $(PY) && $(PY) -m tools.stack status || echo "no venv yet: run make setup"

logs: ## follow every service's log
	tail -n 20 -F logs/*.log

demo: setup ## set up, start everything, ingest 1,000 photos (a random model and sample set when offline), print the UI's address
	$(PY) -m tools.demo --limit $(LIMIT)

demo-offline: setup ## the demo without trying the internet: random-weight model, generated sample photos
	$(PY) -m tools.demo --offline --limit $(LIMIT)

# A folder is ingested whole unless LIMIT is given; a file source takes at most LIMIT (default 1000) photos.
ingest: setup ## enqueue photos: make ingest SOURCE=photos.tsv|dataset.zip|urls.txt|folder LIMIT=1000 [ARGS=...]
	@test -n "$(SOURCE)" || { echo "usage: make ingest SOURCE=path/to/photos.tsv|folder [LIMIT=1000]"; exit 2; }
	$(PY) -m tools.ingest "$(SOURCE)" $(if $(and $(filter file,$(origin LIMIT)),$(wildcard $(SOURCE)/.)),,--limit $(LIMIT)) $(ARGS)

reembed: setup ## re-embed the library under a new model without downtime, waiting until the switch: make reembed MODEL=... [TEXT_MODEL=...] [ACTION=rollback|drop-old]
	@test -n "$(MODEL)$(ACTION)" || { echo "usage: make reembed MODEL=<model> [TEXT_MODEL=<text tower>] | ACTION=rollback|drop-old"; exit 2; }
	$(PY) -m tools.reembed $(if $(MODEL),--model "$(MODEL)") $(if $(TEXT_MODEL),--text-model "$(TEXT_MODEL)") $(if $(ACTION),--action $(ACTION)) $(ARGS)

search: setup ## search from the terminal: make search Q="a beach at sunset" [ARGS="--minus people --like PHOTO_ID --image x.jpg --top-k 20"]
	$(PY) -m tools.search "$(Q)" $(ARGS)

index: setup ## the vector index of STORE_TABLE: make index ACTION=build|status|drop (build it after a bulk ingestion)
	$(PY) -m services.photostore index $(or $(ACTION),status)

backup: setup ## back up the library (STORE_TABLE: photos, vectors, thumbnails, files, model record) into a new folder under BACKUP_DIR
	$(PY) -m tools.backup $(ARGS)

restore: setup ## restore a backup: make restore FROM=data/backups/photos-... [ARGS=--replace] (checked whole before anything is written)
	@test -n "$(FROM)" || { echo "usage: make restore FROM=backup folder [ARGS=--replace]"; exit 2; }
	$(PY) -m tools.restore "$(FROM)" $(ARGS)

test-faults: setup ## fault tests: kill workers, stop the embedder, restart the store and Redis during an ingestion; prints a table
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest tests/faults $(PYTEST_ARGS)

random-model: FAMILY ?= clip
random-model: setup ## write a model with random weights: make random-model DIR=... SIZE=tiny|b32 FAMILY=clip|siglip|siglip2|st-multilingual|mclip [ALIGNED_TO=image model dir]
	$(PY) -m tools.random_model "$(DIR)" --size $(SIZE) --family $(FAMILY) $(if $(ALIGNED_TO),--aligned-to "$(ALIGNED_TO)")

lint: setup ## static checks: ruff, then the layout (no import cycle, no module over 400 lines)
	$(PY) -m ruff check services ui tools tests bench
	$(PY) -m tools.lint_layout

test: setup lint ## lint, then every test: unit, integration (real Redis and store), end to end (every service, a real browser)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## unit tests only (no network)
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## integration tests (real Redis, real embedded store)
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-hostile: setup ## hostile inputs against the real services, and the gateway's OpenAPI fuzzed
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest tests/hostile $(PYTEST_ARGS)

test-e2e: setup ## end-to-end tests (every service its own process, headless Chromium)
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# Only this target writes docs/screenshot.png; the browser tests otherwise leave the work tree alone.
screenshot: setup ## take the README's picture of the search page again (docs/screenshot.png), from the browser test
	WRITE_SCREENSHOT=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest tests/e2e/test_browser_query_builder.py -k test_load_more_appends_the_next_page $(PYTEST_ARGS)

conformance: setup ## the store conformance suite; against your server: make conformance STORE=https://user:pw@host:8443/default
	HF_HUB_OFFLINE=1 $(if $(STORE),CONFORMANCE_STORE_URL=$(STORE)) $(PY) -m pytest tests/conformance $(PYTEST_ARGS)

bench-embedder: setup ## embedder throughput vs the article's one-image loop, then one query's latency in each family and text tower, then each CPU backend over HTTP against torch eager (b32 random weights); DEVICE=cpu|cuda, DTYPE=int8|..., QUICK=1
	$(PY) -m bench.embedder $(if $(DEVICE),--device $(DEVICE)) $(if $(DTYPE),--dtype $(DTYPE)) $(if $(QUICK),--quick)
	$(PY) -m bench.text_towers $(if $(DEVICE),--device $(DEVICE)) $(if $(QUICK),--quick)
	$(if $(filter cuda,$(DEVICE)),,$(PY) -m bench.backends $(if $(QUICK),--quick))

bench-store: setup ## vector search: insert rate, index build, latency, recall@10 at 25k and 200k rows; SIZE=1000000: clustered, quantizations bf16, i8, f32 side by side (+ a PNG)
	$(PY) -m bench.store $(if $(filter-out tiny b32,$(SIZE)),--sizes $(SIZE) --quantizations $(QUANT)) $(if $(QUICK),--quick)

bench-ingest: setup ## photos/s through the whole system (ingest command, Celery workers, embedder, store) vs the article's download-and-embed loop; PHOTOS=400, DTYPE=int8|..., QUICK=1
	$(PY) -m bench.ingest $(if $(PHOTOS),--photos $(PHOTOS)) $(if $(DTYPE),--dtype $(DTYPE)) $(if $(QUICK),--quick)

bench-search: setup ## text queries through the gateway (25,000 photos, b32 random weights): p50/p99 at 1 client, queries/s at 8 and 32, against the embedder, the store and the article's in-process search; BACKEND=torch|onnxruntime, QUICK=1
	$(PY) -m bench.search $(if $(PHOTOS),--photos $(PHOTOS)) $(if $(BACKEND),--backend $(BACKEND)) $(if $(QUICK),--quick)

bench-lexical: setup ## word search: recall@10 of keyword-tagged sample photos in lexical, vector and hybrid (RRF) mode, and a word query's p50 against a vector query's at 25,000 rows; PHOTOS=2000, QUICK=1
	$(PY) -m bench.lexical $(if $(PHOTOS),--photos $(PHOTOS)) $(if $(QUICK),--quick)

bench-reembed: setup ## re-embedding 2,000 photos to a second tiny model under a search loop: photos/s, failed searches (must be 0), search p50 before vs during; PHOTOS=2000, QUICK=1
	$(PY) -m bench.reembed $(if $(PHOTOS),--photos $(PHOTOS)) $(if $(QUICK),--quick)

bench-rerun: setup ## a re-run of an unchanged 2,000-file folder against its first ingest (FILES=2000, UPLOAD=1, QUICK=1)
	$(PY) -m bench.rerun $(if $(FILES),--files $(FILES)) $(if $(UPLOAD),--upload) $(if $(QUICK),--quick)

bench-folder-memory: setup ## peak RSS of the ingest command and the gateway scanning and submitting a folder of FILES=10000,100000 tiny files, against both idle
	$(PY) -m bench.folder_memory $(if $(FILES),--files $(FILES))

bench-formats: setup ## the worker's photos/s for HEIC, AVIF, RAW (DNG) and video frames against JPEG, and its peak memory on a large RAW and a 2-minute video
	$(PY) -m bench.formats

bench-backup: setup ## backup and restore of ROWS=100000 photos in an embedded store: time each and peak memory, against 10,000 rows
	$(PY) -m bench.backup $(if $(ROWS),--rows $(ROWS))

eval: setup ## text-to-image recall@1/5/10 per language: make eval DATA=data/eval/xtd10 [MODEL=... TEXT_MODEL=... DEVICE=cpu|cuda]
	@test -n "$(DATA)" || { echo "usage: make eval DATA=folder (images/*.jpg + captions.jsonl; make eval-download writes one) [MODEL=... TEXT_MODEL=...]"; exit 2; }
	$(PY) -m bench.eval "$(DATA)" $(if $(MODEL),--model "$(MODEL)") $(if $(TEXT_MODEL),--text-model "$(TEXT_MODEL)") $(if $(DEVICE),--device $(DEVICE)) $(if $(DTYPE),--dtype $(DTYPE)) $(ARGS)

eval-download: setup ## fetch a public multilingual captions set for make eval: make eval-download NAME=xtd10|crossmodal3600 [DEST=data/eval/NAME] [ARGS="--languages es,en --limit 500"]
	@test -n "$(NAME)" || { echo "usage: make eval-download NAME=xtd10|crossmodal3600 [DEST=data/eval/NAME]"; exit 2; }
	$(PY) -m tools.eval_download "$(NAME)" $(if $(DEST),--dest "$(DEST)") $(ARGS)

bench: bench-embedder bench-ingest bench-store bench-rerun bench-search ## every benchmark; figures go to bench/results/

clean: down ## stop services and delete data/, logs/, run/ (keeps the venv)
	rm -rf data logs run test-output
