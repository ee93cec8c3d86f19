"""The OpenAPI schema that `cog build` writes to `.cog/openapi_schema.json`.

coglet validates inputs (422 on a wrong type or a value out of bounds), answers `/openapi.json`
and allows server-sent-event streaming only when that file exists. The Go CLI that writes it is
not on PyPI, so this module writes the same document from the runner itself: the inputs come
from the Cog SDK's own inspector (the one coglet's worker uses), laid out as the CLI lays them
out (pkg/schema/openapi_spec.go in replicate/cog).

    python -m saladcog.schema predict.py:Whisper > .cog/openapi_schema.json
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import cog
from cog import _inspector


def title_case(name: str) -> str:
    return " ".join(part[:1].upper() + part[1:] for part in name.split("_"))


def load_runner_module(ref: str):
    """Import the file of a `path/to/predict.py:Name` reference; return (module, name)."""
    path_text, _, name = ref.partition(":")
    if not name:
        raise ValueError(f"runner reference {ref!r} must look like predict.py:Name")
    path = Path(path_text).resolve()
    module_name = path.stem
    if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(path):
        return sys.modules[module_name], name
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module, name


def _streams(run_fn) -> bool:
    """True when run() carries the `@cog.streaming` marker (a no-op at run time, so read the source)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(run_fn)))
    fn = tree.body[0]
    for decorator in getattr(fn, "decorator_list", []):
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "streaming":
            return True
    return False


def _input_schema(info) -> tuple[dict[str, Any], dict[str, Any]]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    enums: dict[str, Any] = {}
    for name, field in sorted(info.inputs.items(), key=lambda item: item[1].order):
        prop: dict[str, Any] = {"x-order": field.order}
        if field.choices:
            enums[name] = {
                "title": name,
                "description": "An enumeration.",
                "enum": list(field.choices),
                "type": field.type.primitive.json_type()["type"],
            }
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        else:
            prop["title"] = title_case(name)
            prop.update(field.type.json_type())
        nullable = field.type.repetition.name.startswith("OPTIONAL")
        if field.default is None and not nullable:
            required.append(name)
        if field.default is not None:
            prop["default"] = field.type.json_encode(field.default)
        if nullable:
            # The CLI writes an optional input's empty default out as null.
            prop["default"] = prop.get("default")
            prop["nullable"] = True
        for key, value in (
            ("description", field.description),
            ("minimum", field.ge),
            ("maximum", field.le),
            ("minLength", field.min_length),
            ("maxLength", field.max_length),
            ("pattern", field.regex),
        ):
            if value is not None:
                prop[key] = int(value) if isinstance(value, float) and value.is_integer() else value
        if field.deprecated:
            prop["deprecated"] = True
        properties[name] = prop
    schema: dict[str, Any] = {"title": "Input", "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, enums


def openapi_schema(ref: str) -> dict[str, Any]:
    """The OpenAPI document for the runner named by `ref` (`predict.py:Name`)."""
    module, name = load_runner_module(ref)
    info = _inspector.create_predictor(module.__name__, name)
    runner = getattr(module, name)
    run_fn = getattr(runner, "run", None) or getattr(runner, "predict")
    input_schema, enums = _input_schema(info)

    def json_op(schema: dict[str, Any], description: str = "Successful Response") -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    validation_error = json_op({"$ref": "#/components/schemas/HTTPValidationError"}, "Validation Error")
    predict_op: dict[str, Any] = {
        "summary": "Predict",
        "description": "Run a single prediction on the model",
        "operationId": "predict_predictions_post",
        "requestBody": {
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictionRequest"}}
            }
        },
        "responses": {
            "200": json_op({"$ref": "#/components/schemas/PredictionResponse"}),
            "422": validation_error,
        },
    }
    if _streams(run_fn):
        predict_op["x-cog-streaming"] = True

    def text(title: str, **extra: Any) -> dict[str, Any]:
        return {"title": title, "type": "string", **extra}

    components: dict[str, Any] = {
        "Input": input_schema,
        "Output": info.output.json_type(),
        **enums,
        "PredictionRequest": {
            "title": "PredictionRequest",
            "type": "object",
            "properties": {"id": text("Id"), "input": {"$ref": "#/components/schemas/Input"}},
        },
        "PredictionResponse": {
            "title": "PredictionResponse",
            "type": "object",
            "properties": {
                "input": {"$ref": "#/components/schemas/Input"},
                "output": {"$ref": "#/components/schemas/Output"},
                "id": text("Id"),
                "version": text("Version"),
                "created_at": text("Created At", format="date-time"),
                "started_at": text("Started At", format="date-time"),
                "completed_at": text("Completed At", format="date-time"),
                "status": text("Status"),
                "error": text("Error"),
                "logs": text("Logs"),
                "metrics": {"title": "Metrics", "type": "object"},
            },
        },
        "Status": {
            "title": "Status",
            "description": "An enumeration.",
            "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
            "type": "string",
        },
        "HTTPValidationError": {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {
                "detail": {
                    "title": "Detail",
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ValidationError"},
                }
            },
        },
        "ValidationError": {
            "title": "ValidationError",
            "required": ["loc", "msg", "type"],
            "type": "object",
            "properties": {
                "loc": {
                    "title": "Location",
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "msg": text("Message"),
                "type": text("Error Type"),
            },
        },
    }
    plain = json_op({})
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": cog.__version__},
        "paths": {
            "/": {"get": {"summary": "Root", "operationId": "root__get", "responses": {"200": plain}}},
            "/health-check": {
                "get": {
                    "summary": "Healthcheck",
                    "operationId": "healthcheck_health_check_get",
                    "responses": {"200": plain},
                }
            },
            "/predictions": {"post": predict_op},
            "/predictions/{prediction_id}/cancel": {
                "post": {
                    "summary": "Cancel",
                    "operationId": "cancel_predictions__prediction_id__cancel_post",
                    "parameters": [
                        {
                            "required": True,
                            "schema": {"title": "Prediction Id", "type": "string"},
                            "name": "prediction_id",
                            "in": "path",
                        }
                    ],
                    "responses": {"200": plain, "422": validation_error},
                }
            },
        },
        "components": {"schemas": components},
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m saladcog.schema path/to/predict.py:RunnerName")
    json.dump(openapi_schema(args[0]), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
