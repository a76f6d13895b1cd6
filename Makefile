# pgturbo: the two commands of the README, and the builds behind them.
#   make demo   install what is missing, build (release), run the demo
#   make test   install what is missing, build (ASan+UBSan), run every test
.PHONY: all deps build release test demo bench clean

JOBS ?= $(shell nproc)
MAKEFLAGS += --no-print-directory

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug -DPGTURBO_SANITIZE=ON >/dev/null
	@cmake --build build -j $(JOBS)

release: deps
	@cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build-release -j $(JOBS)

test: build
	@cd build && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS)

demo: release
	@scripts/demo.sh build-release/pgturbo

bench: release
	@bench/pgbench_compare.sh build-release/pgturbo

clean:
	rm -rf build build-release
