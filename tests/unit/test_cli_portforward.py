"""`kwire port-forward`'s pure parts: port specs and a Service's ports as the pod's."""
import pytest

from kwire.cli import CLIError
from kwire.cli.portforward import _target_port, parse_port_spec

SERVICE = {"metadata": {"name": "web"},
           "spec": {"ports": [{"name": "http", "port": 8000, "targetPort": "web"},
                              {"name": "alt", "port": 8443, "targetPort": 443},
                              {"port": 9000}]}}
POD = {"metadata": {"name": "web-1"},
       "spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 80}]}]}}


def test_port_specs():
    assert parse_port_spec("8080:80") == (8080, "80")
    assert parse_port_spec(":80") == (0, "80")
    assert parse_port_spec("80") == (80, "80")
    assert parse_port_spec("0:http") == (0, "http")
    for bad in ("x:80", "8080:", "70000:80"):
        with pytest.raises(CLIError):
            parse_port_spec(bad)


def test_service_ports_become_target_ports():
    assert _target_port(SERVICE, POD, "8000") == 80
    assert _target_port(SERVICE, POD, "http") == 80
    assert _target_port(SERVICE, POD, "8443") == 443
    assert _target_port(SERVICE, POD, "9000") == 9000
    with pytest.raises(CLIError, match="does not have a service port 1234"):
        _target_port(SERVICE, POD, "1234")
