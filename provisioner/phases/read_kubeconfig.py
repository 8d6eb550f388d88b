"""Read kubeconfig: load the kubeconfig ``up`` wrote (``check`` tests the API through it)."""

from __future__ import annotations

from pathlib import Path

from provisioner import kubeconfig
from provisioner.checks import api_check
from provisioner.errors import KubeconfigError
from provisioner.phases import Context, Phase
from provisioner.summary import FetchedKubeconfig


class ReadKubeconfig(Phase):
    """Reads ``--kubeconfig`` (default ./<cluster>.kubeconfig) and picks the cluster's context
    (``--context``, default the cluster name) for the verify phase; writes nothing. A missing or
    unusable file is a failed check, not the end of the run."""

    title = "read kubeconfig"

    def run(self, ctx: Context) -> None:
        inputs = ctx.inputs
        options = inputs.options
        check = options.check
        name = inputs.inventory.cluster.name
        path = (check.kubeconfig if check else None) or Path(f"{name}.kubeconfig")
        context = options.context_name or name
        try:
            config = select_context(path, context)
        except KubeconfigError as error:
            ctx.results.checks.append(api_check("error", str(error)))
            return
        ctx.results.kubeconfig = FetchedKubeconfig(config, context, kubeconfig.WriteResult(path, changed=False))


def select_context(path: Path, context: str) -> dict[str, object]:
    """The kubeconfig at ``path`` reduced to ``context`` and the cluster and user it names."""
    try:
        text = path.read_text()
    except OSError as error:
        raise KubeconfigError(
            f"cannot read the kubeconfig {path}: {error.strerror or error} (write it with `provisioner kubeconfig`, or pass --kubeconfig)"
        ) from None
    data = kubeconfig.parse(text, str(path))

    def entry(section: str, key: str, wanted: object) -> object:
        found = next((e for e in data.get(section) or [] if e.get("name") == wanted), None)
        if found is None or not isinstance(found.get(key), dict):
            raise KubeconfigError(f"{path}: no {key} named {wanted!r}")
        return found

    ctx_entry = entry("contexts", "context", context)
    ctx_body = ctx_entry["context"]  # type: ignore[index]
    cluster = entry("clusters", "cluster", ctx_body.get("cluster"))
    user = entry("users", "user", ctx_body.get("user"))
    if "certificate-authority-data" not in cluster["cluster"]:  # type: ignore[index]
        raise KubeconfigError(f"{path}: the cluster of context {context!r} has no certificate-authority-data")
    return {"current-context": context, "contexts": [ctx_entry], "clusters": [cluster], "users": [user]}
