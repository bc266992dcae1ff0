"""`kwire logs` and `kwire exec`, their pure parts: arguments as kubectl reads them,
the container picked, and the exit code read from the channel 3 Status."""
import pytest

from kwire.cli import CLIError
from kwire.cli.exec import exit_of
from kwire.cli.logs import pick_container, pod_name, since_seconds


def test_pod_name():
    assert pod_name("web") == pod_name("pod/web") == pod_name("pods/web") == "web"
    with pytest.raises(CLIError, match="only pods"):
        pod_name("deploy/web")


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1.5s", 2), ("500ms", 1), ("0s", 0)])
def test_since_seconds(text, seconds):
    assert since_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1h 2m"])
def test_bad_since(text):
    with pytest.raises(CLIError, match="invalid duration"):
        since_seconds(text)


def test_pick_container(capsys):
    pod = {"metadata": {"name": "web"},
           "spec": {"containers": [{"name": "nginx"}, {"name": "side"}],
                    "initContainers": [{"name": "setup"}]}}
    assert pick_container(pod, None) == "nginx"
    assert capsys.readouterr().err == 'Defaulted container "nginx" out of: nginx, side, setup (init)\n'
    assert pick_container(pod, "setup") == "setup"
    pod["metadata"]["annotations"] = {"kubectl.kubernetes.io/default-container": "side"}
    assert pick_container(pod, None) == "side"
    assert capsys.readouterr().err == ""
    with pytest.raises(CLIError, match="container nope is not valid for pod web"):
        pick_container(pod, "nope")


def test_exit_of():
    assert exit_of(None) == (0, "")
    assert exit_of({"metadata": {}, "status": "Success"}) == (0, "")
    assert exit_of({"status": "Failure", "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}}) == (
        42, "command terminated with exit code 42")
    assert exit_of({"status": "Failure", "reason": "InternalError",
                    "message": "Internal error occurred: nope"}) == (
        1, "error: Internal error occurred: nope")
    assert exit_of({"status": "Weird"})[0] == 1
