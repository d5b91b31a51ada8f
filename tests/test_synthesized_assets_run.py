"""What deploys is what was tested: every function of a synthesized workflow stack, from its own
bundled asset and the bundled layer, imports its handler in a clean interpreter that has only
what Lambda provides, and handles one event against the test MongoDB server.

The layer is really bundled (pip, manylinux wheels for the Lambda runtime's Python) into a fixed
assembly under ``.build/``, so later runs reuse it. Each function runs under this machine's
interpreter, and again under an interpreter of the functions' own Python version where one is
found (``tests.lambda_sandbox.target_interpreter``: ``$LAMBDA_PYTHON`` or ``python3.14`` on the
path), which loads the layer's compiled parts (pymongo's and bson's C extensions, jsonschema's
``rpds``) as Lambda does. Under an older interpreter pymongo runs without its C extensions (built
for the runtime's version), which is pure Python from the same wheel, and ``rpds`` cannot load:
those runs skip, saying why, where no such interpreter is found.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from cdk_app.app import build
from cdk_app.config import AppConfig
from constructs.lambda_runtime import PYTHON_RUNTIME, python_version
from runtime.clock import utcnow
from runtime.definition.model import Job, Phase, Workflow
from runtime.documents.envelopes import parse_status_event
from runtime.documents.signatures import StatusKeys
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import REPO, catch_the_fish, cdk_json_context, logical_id
from tests.lambda_sandbox import FakeAws, fake_aws, invoke, lambda_runtime_folder, target_interpreter

pytestmark = pytest.mark.synth

ASSEMBLY = REPO / ".build" / "test-assets-run"
EVENTS = REPO / "tests" / "fixtures" / "events"
RUN = "sandbox-run-1"
TOPIC = "arn:aws:sns:us-east-1:111111111111:catch_the_fish"
RUNTIME_PYTHON = python_version(PYTHON_RUNTIME)


def functions_python() -> str:
    """An interpreter of the functions' Python version, or the test skips saying why."""
    found, looked = target_interpreter(RUNTIME_PYTHON)
    if found is None:
        pytest.skip(
            f"no Python {RUNTIME_PYTHON} interpreter here (looked at {looked}); the package registries "
            "this project uses ship none (uv and pbs-installer download it from GitHub)"
        )
    return found


@pytest.fixture(params=["this machine's Python", "the functions' Python"])
def interpreter(request: pytest.FixtureRequest) -> str:
    return sys.executable if request.param == "this machine's Python" else functions_python()


@pytest.fixture(scope="module")
def job_code(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A job file, and a job folder whose requirements.txt pins a version of six Lambda lacks."""
    root = tmp_path_factory.mktemp("sandbox_jobs")
    (root / "gear.py").write_text("def handler(event, context):\n    return {'rod': 'carbon'}\n")
    (root / "catch").mkdir()
    (root / "catch" / "handler.py").write_text(
        "import six\n\ndef handler(event, context):\n    return {'fish': 3, 'six': six.__version__}\n"
    )
    (root / "catch" / "requirements.txt").write_text("six==1.16.0\n")
    return {"buy_fishing_gear": str(root / "gear.py"), "catch_fish": str(root / "catch")}


@pytest.fixture(scope="module")
def deployed(job_code: dict[str, str]) -> tuple[Any, Workflow]:
    base = catch_the_fish()
    workflow = catch_the_fish(
        phases=tuple(
            Phase(
                name=phase.name,
                jobs=tuple(
                    Job(name=job.name, phase=job.phase, after=job.after, code=job_code.get(job.name))
                    for job in phase.jobs
                ),
            )
            for phase in base.phases
        )
    )
    app = App(outdir=str(ASSEMBLY), context=cdk_json_context())
    built = build(app, AppConfig(), [workflow])
    app.synth()
    return built, workflow


@pytest.fixture(scope="module")
def lambda_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lambda_runtime_folder(tmp_path_factory.mktemp("lambda_runtime"))


def function_properties(function: Any) -> dict[str, Any]:
    template = Template.from_stack(Stack.of(function)).to_json()
    return dict(template["Resources"][logical_id(function)]["Properties"])


def asset_folder(code: dict[str, Any]) -> Path:
    """The assembly folder of the asset a template's ``Code``/``Content`` points at (functions
    of one nested stack share one runtime-only asset, so this is read from the template)."""
    key = code["S3Key"]
    assert isinstance(key, str), key
    folder = ASSEMBLY / f"asset.{key.removesuffix('.zip')}"
    assert folder.is_dir(), folder
    return folder


def run_function(
    function: Any,
    event: dict[str, Any],
    *,
    layer: Path,
    lambda_runtime: Path,
    aws: FakeAws,
    mongo_uri: str,
    store: StoreSettings,
    interpreter: str,
) -> dict[str, Any]:
    """The function's handler and environment as synthesized; what CloudFormation would resolve
    (ARNs) gets a stand-in, and the secret is replaced by the test server's URI."""
    properties = function_properties(function)
    asset = asset_folder(properties["Code"])
    environment = {
        key: value if isinstance(value, str) else TOPIC
        for key, value in properties["Environment"]["Variables"].items()
        if key != "MONGODB_SECRET_ARN"
    }
    versions = properties["Environment"]["Variables"].get("JOB_VERSIONS")
    if isinstance(versions, dict):
        # What CloudFormation resolves: each job function's published version, here the first.
        environment["JOB_VERSIONS"] = ",".join("1" for _ in versions["Fn::Join"][1])
    environment |= {
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": store.database,
        "LAMBDA_TASK_ROOT": str(asset),
        "AWS_ENDPOINT_URL": aws.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    ran = invoke(
        properties["Handler"],
        event,
        path=[asset, layer / "python", lambda_runtime],
        environment=environment,
        function_name=properties["FunctionName"],
        interpreter=interpreter,
    )
    assert ran["outside"] == [], f"{properties['FunctionName']} loaded modules from outside its path"
    return dict(ran["result"])


FUNCTION_ARN_PREFIX = "arn:aws:lambda:us-east-1:111111111111:function:"
"""The sandbox's functions' ARNs (``tests.lambda_sandbox``), qualified by version in a pinned run."""


def status_event(document: dict[str, Any]) -> dict[str, Any]:
    """The Atlas trigger's event for a ``statuses`` document, in the fixture's envelope."""
    envelope = json.loads((EVENTS / "atlas-trigger-insert.eventbridge.json").read_text())
    plain = json.loads(json.dumps(document, default=str))
    envelope["detail"]["fullDocument"] = plain
    envelope["detail"]["documentKey"] = {"_id": plain["_id"]}
    return dict(envelope)


def layer_folder(built: Any) -> Path:
    shared = Template.from_stack(built.shared).to_json()["Resources"]
    return asset_folder(shared[logical_id(built.shared.layer)]["Properties"]["Content"])


def test_the_layer_loads_its_compiled_parts_under_the_functions_python(deployed):
    """What this machine's older interpreter cannot show: the layer's C and Rust extensions,
    built for the runtime's version, load as Lambda loads them."""
    python = functions_python()
    built, _ = deployed
    probe = (
        "import json, sys; sys.path[:0] = [sys.argv[1]]; import bson, pymongo, rpds, jsonschema; "
        "print(json.dumps([bson.has_c(), pymongo.has_c(), rpds.__file__]))"
    )

    ran = subprocess.run(
        [python, "-I", "-S", "-c", probe, str(layer_folder(built) / "python")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    bson_c, pymongo_c, rpds_file = json.loads(ran.stdout)
    assert (bson_c, pymongo_c) == (True, True)
    assert rpds_file.startswith(str(layer_folder(built)))


def test_every_synthesized_function_runs_from_its_own_asset_and_the_layer(
    deployed, lambda_runtime, mongo_client, mongo_uri, store_settings, interpreter
):
    built, workflow = deployed
    construct = built.workflows["catch_the_fish"]
    layer = layer_folder(built)
    statuses = mongo_client[store_settings.database][store_settings.statuses_collection]

    with fake_aws() as aws:

        def run(function: Any, event: dict[str, Any]) -> dict[str, Any]:
            return run_function(
                function,
                event,
                layer=layer,
                lambda_runtime=lambda_runtime,
                aws=aws,
                mongo_uri=mongo_uri,
                store=store_settings,
                interpreter=interpreter,
            )

        # GIVEN a run started by the starter (the compiled definition from its own asset)
        assert run(construct.starter, {"run_id": RUN, "input": {}}) == {"run_id": RUN, "created": True}
        started = statuses.find_one({"runId": RUN, "status": "workflow_started"})
        assert started is not None

        # WHEN the orchestrator handles the trigger's event for it, THEN it dispatches the first job
        assert run(construct.orchestrator, status_event(started))["dispatched"] == ["buy_fishing_gear"]
        (dispatched_to, payload), *_ = aws.invocations
        # (the version the run was pinned to at its start, by its qualified ARN)
        assert dispatched_to == f"{FUNCTION_ARN_PREFIX}catch_the_fish-job-buy_fishing_gear:1"

        # AND every job function runs its code (or the stub) when the orchestrator dispatches it,
        # and each success it reports makes the orchestrator dispatch what became ready
        # (each job function also hands its report to the orchestrator: delivery fast, the default)
        ran: list[str] = []
        handed_off: list[str] = []
        seen = 0
        while seen < len(aws.invocations):
            function, event = aws.invocations[seen]
            seen += 1
            if function == "catch_the_fish-orchestrator":
                handed_off.append(event["handoff"])
                continue
            job = function.removeprefix(f"{FUNCTION_ARN_PREFIX}catch_the_fish-job-").removesuffix(":1")
            ran.append(job)
            outcome = run(construct.job_function(job), event)
            assert outcome == {"outcome": "success", "error": None}, job
            success = statuses.find_one({"runId": RUN, "job": job, "status": "success"})
            run(construct.orchestrator, status_event(success))
        assert sorted(ran) == sorted(job.name for job in workflow.jobs())
        successes = statuses.find({"runId": RUN, "status": "success"}, {"_id": 1})
        assert sorted(handed_off) == sorted(str(document["_id"]) for document in successes)
        outputs = {
            document["job"]: document["output"]
            for document in statuses.find({"runId": RUN, "status": "success"})
        }
        assert outputs["buy_fishing_gear"] == {"rod": "carbon"}
        assert outputs["catch_fish"] == {"fish": 3, "six": "1.16.0"}  # from the job's own asset
        assert outputs["cook"] == {"stub": True, "job": "cook"}
        assert statuses.find_one({"runId": RUN, "status": "workflow_succeeded"}) is not None

        # AND an on-failure record of an attempt that reported its end changes nothing
        failure = json.loads((EVENTS / "lambda-async-on-failure.record.json").read_text())
        # (Lambda's record carries the event it invoked with, the attempt's key included)
        failure["requestPayload"] = next(e for f, e in aws.invocations if f.endswith("-job-rent_a_boat:1"))
        assert run(construct.orchestrator, failure)["action"] == "ignored"

        # AND the notifier publishes the fixture's event to the topic once it is signed with the
        # deployed key, and nothing while it is not
        unsigned = json.loads((EVENTS / "atlas-trigger-insert.eventbridge.json").read_text())
        assert run(construct.notifier, unsigned)["sent"] is False
        key = StatusKeys.from_text(aws.secret_string, "the fake secret")
        signed = parse_status_event(unsigned).signed_by_control(key)
        unsigned["detail"]["fullDocument"] = json.loads(json.dumps(signed.to_document(utcnow()), default=str))
        notified = run(construct.notifier, unsigned)
        assert notified["sent"] is True
        assert [publication["TopicArn"] for publication in aws.publications] == [TOPIC]
