# The README's quick start: `make demo` runs the main job, `make test` runs the tests.
# Both install missing system packages first (see .ci/install-deps) and say what they install.

.PHONY: deps demo test test-libvirt lint bench schema

deps:
	@.ci/install-deps

demo: deps
	cargo build --release --quiet
	./target/release/plan validate examples/lab.yml
	./target/release/plan graph examples/lab.yml --format text

test: deps
	cargo test

# The same tests, plus those that need a real libvirtd: installs libvirt and QEMU, starts the
# daemon (this needs root), and points the tests at it.
test-libvirt: deps
	.ci/install-libvirt
	.ci/libvirtd start
	SITEPLAN_TEST_LIBVIRT_URI=qemu:///system cargo test

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# Observation is also measured on a real libvirtd when one answers on qemu:///system.
bench: deps
	cargo bench --bench validate
	if virsh -c qemu:///system version >/dev/null 2>&1; then \
	  SITEPLAN_BENCH_LIBVIRT_URI=qemu:///system cargo bench --bench observe; \
	else cargo bench --bench observe; fi

schema:
	cargo run --quiet -- schema > schemas/plan.schema.json
