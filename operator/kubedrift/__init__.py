"""kubedrift: finds where a Kubernetes cluster no longer matches its manifests in Git."""

__version__ = "0.1.0"
