# make up:   install what is missing (apt + a virtualenv), put kwire on the PATH, start a cluster
# make test: the same set-up, then the whole test suite
VENV    ?= .venv
PY      := $(VENV)/bin/python
APT_PKGS := python3 python3-venv python3-pip ca-certificates iproute2 util-linux busybox-static nginx-light \
            skopeo docker-registry runc conmon containernetworking-plugins iptables nftables \
            iputils-ping iperf3 dnsutils conntrack

.PHONY: up down test unit bench deps apt venv

up: deps
	ln -sf $(abspath $(VENV))/bin/kwire /usr/local/bin/kwire
	kwire up

down:
	-kwire down

deps: apt venv

apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@# nginx-light is only the source of the offline nginx image: no nginx on the host
	-@systemctl disable --now nginx >/dev/null 2>&1 || true
	@# docker-registry is only for the image-pull tests, which start their own on loopback
	-@systemctl disable --now docker-registry >/dev/null 2>&1 || true

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: deps
	$(PY) -m pytest -q -p no:cacheprovider tests

unit: venv
	$(PY) -m pytest -q tests/unit

bench: deps
	$(PY) bench/api.py
