"""sample-policy

Labels every object it is given, and refuses Pods whose images float: an
image tagged ``:latest``, or with neither a tag nor a digest, on any
container, init container or ephemeral container. On UPDATE only the images
the update brings are judged, so relabelling an old Pod passes.

Build with ``berth plugin build .``, test with ``berth test .``.
"""

import json
from dataclasses import dataclass
from typing import Optional

from berth_sdk import (
    Patch,
    Settings,
    SettingsError,
    Verdict,
    check_label_key,
    check_label_value,
    export_plugin,
    log,
    pointer,
)


@dataclass
class Label:
    key: str
    value: str


@dataclass
class SamplePolicySettings(Settings):
    """The policy's ``settings`` in berth.yaml:
    ``{"label": {"key": "example.com/checked", "value": "true"}}``.
    Every field is required; any other field is an error that names it."""

    label: Label

    def validate(self):
        problem = check_label_key(self.label.key)
        if problem is not None:
            raise SettingsError("label.key", problem)
        problem = check_label_value(self.label.value)
        if problem is not None:
            raise SettingsError("label.value", problem)


def evaluate(request, settings):
    """The verdict on one admission request."""
    if not request.has_object():
        return Verdict.allow()  # DELETE: nothing to label or judge.
    obj = request.object()

    if request.kind["kind"] == "Pod":
        problems = image_problems(request, obj.get("spec") or {})
        if problems:
            return Verdict.deny("; ".join(problems))

    key, value = settings.label.key, settings.label.value
    labels = (obj.get("metadata") or {}).get("labels")
    if labels is None:
        return Verdict.mutate(Patch().add("/metadata/labels", {key: value}))
    path = pointer(["metadata", "labels", key])
    if key not in labels:
        return Verdict.mutate(Patch().add(path, value))
    old = labels[key]
    if old == value:
        return Verdict.allow()
    return Verdict.mutate(Patch().replace(path, value)).with_warning(
        f"label {quote(key)} was {quote(old)}, now {quote(value)}"
    )


# The container lists of a Pod spec, in the order they are judged, and how a
# message names a container of each.
CONTAINER_LISTS = [
    ("initContainers", "init container"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral container"),
]


def containers(spec):
    """Every container with an image, as (what, name, image), in list order."""
    found = []
    for list_name, what in CONTAINER_LISTS:
        for container in spec.get(list_name) or []:
            if container.get("image"):
                found.append((what, container.get("name") or "", container["image"]))
    return found


def image_problems(request, spec):
    """One message per floating image, in the order the Pod lists them. On
    UPDATE, an image the stored Pod already runs was admitted before and is
    not judged again."""
    admitted = set()
    if request.operation == "UPDATE":
        admitted = {image for _, _, image in containers(request.old_object().get("spec") or {})}
    judged = [c for c in containers(spec) if c[2] not in admitted]
    log.debug(f"judged {len(judged)} images")
    problems = []
    for what, name, image in judged:
        why = floats(image)
        if why:
            problems.append(f"{what} {quote(name)}: image {quote(image)} {why}")
    return problems


def floats(image) -> Optional[str]:
    """Why an image reference does not pin what runs, if it does not. A
    digest pins it whatever its tag; the tag is what follows ``:`` in the
    last path segment (a registry's port is in the first)."""
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has neither tag nor digest"
    if last.split(":", 1)[1] == "latest":
        return "is tagged :latest"
    return None


def quote(text) -> str:
    """A string in double quotes, as the messages show names and images."""
    return json.dumps(text, ensure_ascii=False)


# The component's exports, WIT `validate-settings` and `evaluate`, made from
# the settings class and the function above (Rust: `export_plugin!`);
# componentize-py looks for the class `WitWorld`.
WitWorld = export_plugin(SamplePolicySettings, evaluate)
