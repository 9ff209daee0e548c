"""The Docker backend: the same scenarios, with a container's memory cgroup as the sandbox.

What it adds to the shared engine (:mod:`harness.machine.engine`) is only *where* things run:

* **Engine.**  An engine that already answers (``DOCKER_HOST`` or the default socket) is used as
  it is.  Otherwise, when root and ``dockerd`` is installed, a throw-away ``dockerd`` is started
  with all of its state in a private temp dir, its containers' cgroups below the harness's own
  memory cgroup (``--cgroup-parent=<own>/oomh-<pid>-docker``, cgroupfs driver), no networking
  and no iptables; it is stopped afterwards (SIGTERM, wait, SIGKILL), and its temp dir, its
  mounts and every cgroup it made, in every hierarchy (runc makes the parent in all of them),
  are removed.  A harness killed with SIGKILL takes its dockerd with it (``PR_SET_PDEATHSIG``);
  the next run (or ``oom-harness cleanup``) removes what is left (:func:`sweep_stale`).
* **Image.**  Built here, without a registry: the host's Python interpreter and stdlib (with
  their shared libraries), coreutils ``sleep``, and ``/opt/oom-harness/{harness,workloads}``
  from this checkout, ``docker import``ed as ``oom-harness:<hash of its inputs>``.  A throw-away
  daemon's data root is deleted with it, so there the image is built once per daemon (about a
  second); an existing engine keeps it (older ``oom-harness:*`` tags are removed).
* **Sandbox.**  One container per scenario (``--network none``, ``--memory`` = ``memory_max``,
  ``--memory-swap`` = ``memory_max + swap_max``, command ``sleep infinity``); the sandbox is the
  container's memory cgroup on the host (read from ``/proc/<init pid>/cgroup``).  Workloads start
  with ``docker exec -i -u UID:GID <ctr> python3 -I -S /opt/oom-harness/workloads/hog.py SPEC``;
  the pids they report (container pid namespace) are mapped to host pids through ``NSpid:``.
  Nested cgroups (``[[cgroup.children]]``) cannot be made inside a container.
* **Main process.**  A workload with ``main = true`` is the container's command instead of
  ``sleep`` (no docker-init: the hog is pid 1 of the pid namespace, ``--oom-score-adj`` its adj),
  started in :meth:`DockerLauncher.sandbox` with ``docker start -ai``, whose pipes are the
  workload's.  The kernel OOM-kills a namespace's init like any task (only the global init is
  exempt); the container then ends, and the kernel kills its exec'd workloads with it
  (the launcher's ``deaths_explained`` tells the engine so).

The runner cross-checks three signals for each scenario: the kernel log (an OOM report whose
``oom_memcg=`` is the container's cgroup), Docker's ``State.OOMKilled`` and the harness's own
outcome (parsed report + model).  ``State.OOMKilled`` is Docker's record of an OOM event in the
container's cgroup (containerd watches ``memory.oom_control``), not of its main process dying:
the workloads are ``exec``'d, so the container's ``sleep`` lives on and ``State.ExitCode`` stays
0; the victim's exit status (137) is in its exec's ``ExitCode``, recorded per workload.
"""

from __future__ import annotations

import sys

LABEL = "oom-harness"


def progress(msg: str) -> None:
    """Progress of a slow Docker step on stderr (stdout stays clean for machine-readable output)."""
    print(f"[docker] {msg}", file=sys.stderr, flush=True)
