"""Check deploy/k8s/ for the mistakes a schema cannot see.

Every file parses; the kustomization lists files that exist and not the
example Secret; every Deployment container has startup, readiness and
liveness probes on ports it declares, requests and limits, a non-root,
read-only-root security context, mounts only volumes the pod defines and
reads only the ConfigMaps and Secrets defined here; Services, the HPA and
the PDB select or target what exists; the grace period covers the preStop
sleep plus the drain bound of docs/scaling.md (ceil(max concurrent requests
/ workers) x deadline).

Usage: python deploy/check_k8s.py [DIR]   (default: deploy/k8s next to this file;
needs PyYAML). Exit 1 and one line per problem on failure.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import yaml


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "k8s"
    problems: list[str] = []
    docs: list[tuple[str, dict]] = []
    for path in sorted(root.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))

    def of(kind: str) -> list[tuple[str, dict]]:
        return [(f, d) for f, d in docs if d.get("kind") == kind]

    names = {(d["kind"], d["metadata"]["name"]) for _, d in docs if "metadata" in d}

    for f, k in of("Kustomization"):
        for r in k.get("resources", []):
            if not (root / r).is_file():
                problems.append(f"{f}: resource {r} does not exist")
            if "example" in r:
                problems.append(f"{f}: lists {r}, an example with placeholder secrets")

    configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in of("ConfigMap")}
    for f, dep in of("Deployment"):
        name = dep["metadata"]["name"]
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        sel = spec["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in sel.items()):
            problems.append(f"{f}: {name}: selector does not match the pod labels")
        volumes = {v["name"] for v in pod.get("volumes", [])}
        psc = pod.get("securityContext", {})
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{f}: {name}/{c['name']}"
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    problems.append(f"{where}: mounts undefined volume {m['name']}")
            sc = c.get("securityContext", {})
            if not sc.get("readOnlyRootFilesystem"):
                problems.append(f"{where}: root filesystem not read-only")
            if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                problems.append(f"{where}: not runAsNonRoot")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                problems.append(f"{where}: no resource requests and limits")
            for src in c.get("envFrom", []):
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in src and (kind, src[key]["name"]) not in names:
                        problems.append(f"{where}: {kind} {src[key]['name']} is not defined here")
        for c in pod["containers"]:
            where = f"{f}: {name}/{c['name']}"
            ports = {p["name"] for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                p = c.get(probe)
                if not p:
                    problems.append(f"{where}: no {probe}")
                elif "httpGet" in p and p["httpGet"]["port"] not in ports:
                    problems.append(f"{where}: {probe} on undeclared port {p['httpGet']['port']}")
            if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/ready":
                problems.append(f"{where}: readinessProbe is not GET /ready")
            if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health":
                problems.append(f"{where}: livenessProbe is not GET /health")
            # Drain bound: preStop sleep + ceil(admitted / workers) x deadline.
            cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            sleep = int(cmd[-1]) if cmd and cmd[-1].isdigit() else 0
            env: dict[str, str] = {}
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    env.update(configmaps.get(src["configMapRef"]["name"], {}))
            env.update({e["name"]: e.get("value", "") for e in c.get("env", []) if "value" in e})
            admitted = int(env.get("NBOOST_MAX_CONCURRENT_REQUESTS", 256))
            workers = int(env.get("NBOOST_WORKERS", 0) or 0)
            deadline_s = int(env.get("NBOOST_DEADLINE_MS", 10_000)) / 1000
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if workers:
                need = sleep + math.ceil(admitted / workers) * deadline_s
                if grace < need:
                    problems.append(f"{where}: terminationGracePeriodSeconds {grace} < "
                                    f"preStop {sleep} s + drain {need - sleep:.0f} s")
            else:
                problems.append(f"{where}: NBOOST_WORKERS unset: the drain bound depends on the node's cores")
            if sleep == 0:
                problems.append(f"{where}: no preStop sleep")

        for fs, svc in of("Service"):
            s = svc["spec"].get("selector", {})
            if s and all(labels.get(k) == v for k, v in s.items()):
                declared = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
                for p in svc["spec"]["ports"]:
                    if isinstance(p.get("targetPort"), str) and p["targetPort"] not in declared:
                        problems.append(f"{fs}: targetPort {p['targetPort']} not declared by {name}")
        for fp, pdb in of("PodDisruptionBudget"):
            s = pdb["spec"]["selector"]["matchLabels"]
            if not all(labels.get(k) == v for k, v in s.items()):
                problems.append(f"{fp}: selects no pod of {name}")

    for f, hpa in of("HorizontalPodAutoscaler"):
        t = hpa["spec"]["scaleTargetRef"]
        if (t["kind"], t["name"]) not in names:
            problems.append(f"{f}: target {t['kind']}/{t['name']} is not defined here")
        if hpa["spec"]["minReplicas"] > hpa["spec"]["maxReplicas"]:
            problems.append(f"{f}: minReplicas > maxReplicas")

    for p in problems:
        print(p)
    print(f"check_k8s: {len(docs)} objects, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
