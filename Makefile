# The README's quick start: `make demo` runs the main job, `make test` runs the tests.
# Both install missing system packages first (see .ci/install-deps) and say what they install.

.PHONY: deps test-deps demo test test-aws test-libvirt test-kube lint bench schema

deps:
	@.ci/install-deps

# What the tests need besides: a headless browser for the picture's test.
test-deps:
	@.ci/install-deps test

# Applies every example to the embedded sandbox (kept in target/demo-sandbox, apart from your own
# sandbox) and shows the result. Run it twice: the second time there is nothing to change.
DEMO_SANDBOX := $(CURDIR)/target/demo-sandbox
demo: deps
	cargo build --release --quiet
	@for plan in examples/*.yml; do \
	  echo "== plan apply $$plan --provider sandbox --yes"; \
	  SITEPLAN_SANDBOX_DIR=$(DEMO_SANDBOX) ./target/release/plan apply $$plan --provider sandbox --yes \
	    --allow-read target/guest-image || exit 1; \
	  echo; \
	done
	@echo "== plan diff examples/lab.yml --provider sandbox"
	@SITEPLAN_SANDBOX_DIR=$(DEMO_SANDBOX) ./target/release/plan diff examples/lab.yml --provider sandbox

# The tests build every backend, the AWS one too (the `aws` feature, off in a plain build); its
# suite runs against moto's EC2 emulator when SITEPLAN_TEST_EC2 names one (`make test-aws`).
test: test-deps
	cargo test --features aws

# The same tests, plus the AWS suite against moto's EC2 emulator, installed from PyPI into a
# virtualenv under target/ and served on 127.0.0.1 (.ci/moto).
test-aws: test-deps
	SITEPLAN_TEST_EC2=$$(.ci/moto start) cargo test --features aws; status=$$?; .ci/moto stop; exit $$status

# The same tests, plus those that need a real libvirtd: installs libvirt and QEMU, starts the
# daemon (this needs root) and an sshd on 127.0.0.1 that reaches it as qemu+ssh:// (.ci/sshd),
# starts three more libvirt hosts in namespaces of their own (.ci/hosts, for a lab spread over
# a group), builds the guest image real guests boot, installs kcli (in a virtualenv under target/) for
# the test of a plan kcli made, and points the tests at them.
test-libvirt: test-deps
	.ci/install-libvirt
	.ci/libvirtd start
	tests/guest-image/build
	.ci/hosts start 3
	SITEPLAN_TEST_LIBVIRT_URI=qemu:///system SITEPLAN_TEST_SSH_URI=$$(.ci/sshd start) \
	  SITEPLAN_TEST_HOSTS=/tmp/siteplan-hosts/list \
	  SITEPLAN_TEST_RESTART_LIBVIRTD="$(CURDIR)/.ci/libvirtd restart" \
	  SITEPLAN_TEST_KCLI=$$(realpath $$(.ci/install-kcli)) cargo test --features aws

# The same tests, plus the KubeVirt suite against two real kube-apiservers built from Debian's
# source package (.ci/install-kube, kept in ~/.cache/siteplan) and started on 127.0.0.1.
test-kube: test-deps
	SITEPLAN_TEST_APISERVER=$$(.ci/kube start a $$(.ci/install-kube)) \
	  SITEPLAN_TEST_APISERVER_B=$$(.ci/kube start b $$(.ci/install-kube)) \
	  SITEPLAN_TEST_APISERVER_BARE=$$(.ci/kube start bare $$(.ci/install-kube)) cargo test --features aws

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --features aws -- -D warnings
	# A build without any backend must still compile (each backend is a cargo feature).
	cargo check --no-default-features --lib --bins

# Observation and apply are also measured on a real libvirtd when one answers on qemu:///system,
# and a lab over a group of hosts when `.ci/hosts start 3` made them.
bench: deps
	cargo bench --bench validate
	cargo bench --bench scale
	if virsh -c qemu:///system version >/dev/null 2>&1; then \
	  SITEPLAN_BENCH_LIBVIRT_URI=qemu:///system cargo bench --bench observe; \
	  SITEPLAN_BENCH_LIBVIRT_URI=qemu:///system cargo bench --bench apply; \
	  SITEPLAN_BENCH_LIBVIRT_URI=qemu:///system cargo bench --bench snapshot; \
	else cargo bench --bench observe; cargo bench --bench apply; cargo bench --bench snapshot; fi
	cargo bench --bench kubevirt
	if [ -f /tmp/siteplan-hosts/list ]; then \
	  SITEPLAN_BENCH_HOSTS=/tmp/siteplan-hosts/list cargo bench --bench groups; \
	else cargo bench --bench groups; fi

schema:
	cargo run --quiet -- schema plan > schemas/plan.schema.json
	cargo run --quiet -- schema diff > schemas/diff.schema.json
	cargo run --quiet -- schema providers > schemas/providers.schema.json
