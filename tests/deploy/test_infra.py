"""The Azure infrastructure (issue 16): ``infra/**/*.bicep``, ``infra/main.parameters.json`` and
``azure.yaml``, checked offline.

No Bicep compiler and no Azure here (``shared/docs/containers.md``), so: every Bicep file is parsed
with ``pycep-parser`` (a syntax error fails), the structure that matters is asserted on the parsed
trees (roles, keyless configuration, secrets, probes, grace period, ingress, scaling, sign-in,
PostgreSQL), the names the app is given are checked against ``realtalk.settings``, azure.yaml's
preprovision hook runs against a stand-in ``azd``, and ``checkov --framework bicep`` must pass
with every skipped check named and justified in the file it skips.

checkov lives in a venv of its own (it pins packages older than the project's): ``make pytest``
creates ``.venv/checkov``; ``REALTALK_CHECKOV`` names another binary. Missing, the checkov test
skips locally and fails under CI.

pycep gives an identifier and a string literal the same JSON string, so assertions on a bare
value check the name the Bicep text uses (``'gateway-secret'`` or ``drainSeconds``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

from realtalk.settings import Settings

REPO_ROOT = Path(__file__).parents[2]
INFRA = REPO_ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
ACR_PULL_ROLE = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
OPENAI_USER_ROLE = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
# A setting whose name has one of these words holds a credential.
CREDENTIAL_WORDS = frozenset({"KEY", "SECRET", "PASSWORD", "TOKEN", "TOKENS", "CREDENTIAL", "CREDENTIALS"})
SKIP_COMMENT = re.compile(r"//\s*checkov:skip=(CKV\w*)(?::(.*))?$")
CHECKOV_TIMEOUT_S = 180.0

Tree = dict[str, Any]


@functools.cache
def parse(path: Path) -> Tree:
    # pycep's TypedDicts describe the JSON; the tests index it freely.
    return dict(BicepParser().parse(file_path=path))


def bicep(relative: str) -> Tree:
    return parse(INFRA / relative)


def body(declaration: Tree) -> Tree:
    """A resource's or module's properties, under its ``if (...)`` when it has one."""
    config: Tree = declaration["config"]
    return config["config"] if "condition" in config else config


def condition(declaration: Tree) -> Any:
    return declaration["config"].get("condition")


def resources_of_type(tree: Tree, resource_type: str) -> list[Tree]:
    return [r for r in tree["resources"].values() if r["type"] == resource_type]


def only_resource(tree: Tree, resource_type: str) -> Tree:
    found = resources_of_type(tree, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {len(found)}"
    return found[0]


def decorators(param: Tree) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in param["decorators"]}


def accessor(*names: str) -> Tree:
    """pycep's form of ``a.b.c``."""
    if len(names) == 1:
        return names[0]  # type: ignore[return-value]
    return {
        "operator": {
            "type": "property_accessor",
            "operands": {"operand_1": names[0], "operand_2": accessor(*names[1:])},
        }
    }


def list_items(tree: Tree, value: Any) -> Iterator[Tree]:
    """The entries a list expression can hold: literal lists, variables, ``concat(...)`` and both
    branches of ``cond ? [...] : [...]``."""
    if isinstance(value, list):
        yield from value
    elif isinstance(value, str) and value in tree["variables"]:
        yield from list_items(tree, tree["variables"][value]["value"])
    elif isinstance(value, dict) and "function" in value and value["function"]["type"] == "concat":
        for argument in value["function"]["parameters"].values():
            yield from list_items(tree, argument)
    elif isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional":
        operands = value["operator"]["operands"]
        yield from list_items(tree, operands["true_value"])
        yield from list_items(tree, operands["false_value"])
    else:
        raise AssertionError(f"not a list expression: {value!r}")


def gateway() -> Tree:
    return bicep("modules/gateway-app.bicep")


def gateway_app() -> Tree:
    return body(only_resource(gateway(), "Microsoft.App/containerApps"))


def gateway_container() -> Tree:
    containers = gateway_app()["properties"]["template"]["containers"]
    assert len(containers) == 1
    container: Tree = containers[0]
    return container


def gateway_env() -> dict[str, Tree]:
    entries = list(list_items(gateway(), gateway_container()["env"]))
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"an environment variable is set twice: {names}"
    return {entry["name"]: entry for entry in entries}


def gateway_secrets() -> dict[str, Tree]:
    entries = list(list_items(gateway(), gateway_app()["properties"]["configuration"]["secrets"]))
    return {entry["name"]: entry for entry in entries}


def is_credential_name(name: str) -> bool:
    return bool(CREDENTIAL_WORDS & set(re.split(r"[_\-.]", name.upper())))


def main_module(name: str) -> Tree:
    module: Tree = bicep("main.bicep")["modules"][name]
    return module


# ----- Every file parses -------------------------------------------------------------------------


def test_the_infrastructure_has_a_main_template_and_modules() -> None:
    assert INFRA / "main.bicep" in BICEP_FILES
    assert len(BICEP_FILES) > 1


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses(path: Path) -> None:
    tree = parse(path)
    assert tree["resources"] or tree["modules"] or tree["outputs"]


def test_the_parser_refuses_a_syntax_error() -> None:
    """So that the parse tests above mean something: an unbalanced brace is an error."""
    text = (INFRA / "modules/gateway-app.bicep").read_text()
    broken = text.replace("      ingress: {", "      ingress: {{", 1)
    assert broken != text
    with pytest.raises(Exception, match=r"Unexpected|Expected|No terminal"):
        BicepParser().parse(text=broken)


def test_every_module_main_uses_exists() -> None:
    for name, module in bicep("main.bicep")["modules"].items():
        assert module["type"] == "local", name
        assert (INFRA / module["detail"]["path"]).is_file(), name


# ----- azd conventions ---------------------------------------------------------------------------


def test_main_is_subscription_scoped_and_makes_the_azd_resource_group() -> None:
    main = bicep("main.bicep")
    assert main["globals"]["scope"]["value"] == "subscription"
    group = body(only_resource(main, "Microsoft.Resources/resourceGroups"))
    assert group["name"] == "resourceGroupName"
    assert main["variables"]["resourceGroupName"]["value"] == "rg-${environmentName}"
    assert group["tags"] == "tags"
    assert main["variables"]["tags"]["value"] == {"'azd-env-name'": "environmentName"}
    # Every module goes into that group, but the role on a (possibly existing) Azure OpenAI
    # resource, which goes into the resource's own group.
    for name, module in main["modules"].items():
        if name != "openAiAccess":
            assert body(module)["scope"] == "rg", name


def test_parameters_file_maps_azd_variables_to_main_parameters() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main_parameters = bicep("main.bicep")["parameters"]
    assert set(parameters) <= set(main_parameters), set(parameters) - set(main_parameters)
    required = {name for name, p in main_parameters.items() if p["default"] is None}
    assert required <= set(parameters), required - set(parameters)
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["gatewayExists"]["value"] == "${SERVICE_GATEWAY_RESOURCE_EXISTS=false}"
    assert parameters["gatewaySecret"]["value"] == "${REALTALK_GATEWAY_SECRET}"


def test_azure_yaml_deploys_the_dockerfile_as_the_gateway_container_app() -> None:
    config = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", config["name"])
    service = config["services"]["gateway"]
    assert service["host"] == "containerapp"
    assert service["language"] == "python"
    assert service["project"] == "."
    dockerfile = REPO_ROOT / service["project"] / service["docker"]["path"]
    assert dockerfile.resolve() == (REPO_ROOT / "Dockerfile").resolve()
    assert dockerfile.is_file()
    # azd finds the app by this tag.
    tags = body(main_module("gateway"))["params"]["tags"]
    assert tags["function"]["type"] == "union"
    assert {"'azd-service-name'": "gateway"} in tags["function"]["parameters"].values()


def test_outputs_azd_and_the_docs_rely_on() -> None:
    outputs = bicep("main.bicep")["outputs"]
    assert outputs["AZURE_CONTAINER_REGISTRY_ENDPOINT"]["value"] == accessor(
        "registry", "outputs", "loginServer"
    )
    assert outputs["SERVICE_GATEWAY_URI"]["value"] == accessor("gateway", "outputs", "uri")
    for name in ("AZURE_LOCATION", "AZURE_TENANT_ID", "AZURE_RESOURCE_GROUP", "AZURE_OPENAI_ENDPOINT"):
        assert name in outputs
    assert not any(is_credential_name(name) for name in outputs), list(outputs)
    assert gateway()["outputs"]["uri"]["value"] == "https://${app.properties.configuration.ingress.fqdn}"


def test_provision_keeps_the_image_azd_deployed() -> None:
    image = body(main_module("gateway"))["params"]["image"]["operator"]
    assert image["type"] == "conditional"
    assert image["operands"]["condition"] == "gatewayExists"
    assert image["operands"]["true_value"] == accessor("existingImage", "outputs", "image")
    fetch = bicep("modules/fetch-image.bicep")
    assert only_resource(fetch, "Microsoft.App/containerApps")["existing"] is True
    assert condition(main_module("existingImage")) == "gatewayExists"


# ----- Identity and roles ------------------------------------------------------------------------


def role_assignment(tree: Tree, role_variable: str) -> Tree:
    """The one role assignment in ``tree`` granting the built-in role held in ``role_variable``."""
    found = []
    for resource in resources_of_type(tree, "Microsoft.Authorization/roleAssignments"):
        role = body(resource)["properties"]["roleDefinitionId"]["function"]
        if (
            role["type"] == "subscription_resource_id"
            and role["parameters"]["resource_name_1"] == role_variable
        ):
            assert role["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
            found.append(body(resource))
    assert len(found) == 1, f"expected one assignment of {role_variable}"
    return found[0]


def test_the_gateway_identity_has_acr_pull_on_the_registry() -> None:
    registry = bicep("modules/registry.bicep")
    assert registry["variables"]["acrPullRoleId"]["value"] == ACR_PULL_ROLE
    assignment = role_assignment(registry, "acrPullRoleId")
    assert assignment["scope"] == "registry"
    assert assignment["properties"]["principalId"] == "pullPrincipalId"
    assert assignment["properties"]["principalType"] == "ServicePrincipal"
    assert body(main_module("registry"))["params"]["pullPrincipalId"] == accessor(
        "identity", "outputs", "principalId"
    )


def test_the_gateway_identity_is_cognitive_services_openai_user() -> None:
    access = bicep("modules/openai-access.bicep")
    assert access["variables"]["openAiUserRoleId"]["value"] == OPENAI_USER_ROLE
    assignment = role_assignment(access, "openAiUserRoleId")
    assert assignment["scope"] == "account"
    assert assignment["properties"]["principalId"] == "principalId"
    assert assignment["properties"]["principalType"] == "ServicePrincipal"
    assert access["resources"]["account"]["type"] == "Microsoft.CognitiveServices/accounts"
    # For a new resource and an existing one alike: the module has no condition.
    module = main_module("openAiAccess")
    assert condition(module) is None
    assert body(module)["params"]["principalId"] == accessor("identity", "outputs", "principalId")


def test_the_app_runs_as_the_user_assigned_identity_and_pulls_with_it() -> None:
    app = gateway_app()
    assert app["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {"'${identityId}'": {}}}
    registries = app["properties"]["configuration"]["registries"]
    assert registries == [{"server": "registryLoginServer", "identity": "identityId"}]
    assert gateway_env()["AZURE_CLIENT_ID"]["value"] == "identityClientId"
    params = body(main_module("gateway"))["params"]
    assert params["identityId"] == accessor("identity", "outputs", "id")
    assert params["identityClientId"] == accessor("identity", "outputs", "clientId")
    registry = body(only_resource(bicep("modules/registry.bicep"), "Microsoft.ContainerRegistry/registries"))
    assert registry["properties"]["adminUserEnabled"] is False


# ----- Keyless, secrets as secrets ---------------------------------------------------------------


def without_comments(path: Path) -> str:
    """The file with its ``//`` and ``#`` line comments removed (not ``https://`` in strings)."""
    return "\n".join(re.sub(r"(^|\s)(//|#).*$", "", line) for line in path.read_text().splitlines())


def test_no_azure_openai_key_anywhere() -> None:
    for path in [*BICEP_FILES, INFRA / "main.parameters.json", REPO_ROOT / "azure.yaml"]:
        code = without_comments(path)
        assert "AZURE_OPENAI_API_KEY" not in code, path
        # The one key read: the workspace's, into the environment's write-only log settings.
        assert "listKeys" not in code or path.name == "container-apps-env.bicep", path
    assert "AZURE_OPENAI_API_KEY" not in gateway_env()


def test_a_new_azure_openai_resource_is_keyless_with_the_realtime_deployment() -> None:
    openai = bicep("modules/openai.bicep")
    account = body(only_resource(openai, "Microsoft.CognitiveServices/accounts"))
    assert account["kind"] == "OpenAI"
    assert account["properties"]["disableLocalAuth"] is True
    assert account["properties"]["customSubDomainName"] == "name"  # token auth needs the subdomain
    deployment = body(only_resource(openai, "Microsoft.CognitiveServices/accounts/deployments"))
    assert deployment["parent"] == "account"
    assert deployment["sku"] == {"name": "deploymentSku", "capacity": "deploymentCapacity"}
    model = deployment["properties"]["model"]
    assert model == {"format": "OpenAI", "name": "modelName", "version": "modelVersion"}
    parameters = openai["parameters"]
    assert parameters["modelName"]["default"] == "gpt-realtime-1.5"
    assert parameters["modelVersion"]["default"] == "2026-02-23"
    assert parameters["deploymentSku"]["default"] == "GlobalStandard"
    regions = {"eastus2", "swedencentral"}
    assert set(decorators(parameters["location"])["allowed"]) == regions
    assert set(decorators(bicep("main.bicep")["parameters"]["openAiLocation"])["allowed"]) == regions


def test_no_credential_setting_has_a_plain_value() -> None:
    env = gateway_env()
    secrets = gateway_secrets()
    credentials = {name: entry for name, entry in env.items() if is_credential_name(name)}
    expected = {"REALTALK_GATEWAY_SECRET", "REALTALK_GATEWAY_PREVIOUS_SECRET", "REALTALK_GATEWAY_TOKENS"}
    assert expected <= set(credentials)
    for name, entry in credentials.items():
        assert "value" not in entry, name
        assert entry["secretRef"] in secrets, name
    for name, entry in env.items():
        if "secretRef" in entry:
            assert "value" not in entry, name
            assert entry["secretRef"] in secrets, name


def test_secrets_are_container_apps_secrets_from_secure_parameters() -> None:
    parameters = gateway()["parameters"]
    secrets = gateway_secrets()
    assert {"gateway-secret", "gateway-previous-secret", "gateway-tokens"} <= set(secrets)
    for name, secret in secrets.items():
        assert set(secret) == {"name", "value"}, name
        assert "secure" in decorators(parameters[secret["value"]]), (
            f"{name} comes from a parameter that is not @secure()"
        )
    # Secret names Container Apps accepts: lower-case letters, digits and '-' (the sign-in
    # secret's name is in a variable).
    auth_secret_name = gateway()["variables"]["authSecretName"]["value"]
    assert auth_secret_name == "microsoft-provider-authentication-secret"
    for name in set(secrets) - {"authSecretName"} | {auth_secret_name}:
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", name), name
    assert decorators(parameters["gatewaySecret"])["min_length"] >= 32


def test_every_credential_parameter_is_secure_everywhere() -> None:
    for path in BICEP_FILES:
        for name, parameter in parse(path)["parameters"].items():
            if is_credential_name(re.sub(r"(?<!^)(?=[A-Z])", "_", name)):
                assert "secure" in decorators(parameter), f"{path.name}: {name}"
                assert parameter["default"] in (None, ""), f"{path.name}: {name} has a default value"


def test_the_ledger_url_has_no_password() -> None:
    url = bicep("main.bicep")["variables"]["ledgerUrl"]["value"]["operator"]["operands"]["true_value"]
    assert (
        url == "postgresql+asyncpg://${identity.outputs.name}@${postgres.outputs.fqdn}:5432/${databaseName}"
    )
    credentials = url.split("://", 1)[1].split("@", 1)[0]
    assert ":" not in credentials
    assert gateway_env()["REALTALK_LEDGER_URL"]["value"] == "ledgerUrl"


def test_the_app_is_only_given_settings_realtalk_reads() -> None:
    aliases = {field.validation_alias for field in Settings.model_fields.values()}
    # AZURE_CLIENT_ID is read by azure-identity's DefaultAzureCredential, not by realtalk.
    assert set(gateway_env()) - {"AZURE_CLIENT_ID"} <= aliases, set(gateway_env()) - aliases


# ----- Health, drain, ingress, scale ------------------------------------------------------------


def test_probes_watch_healthz_and_readyz_on_the_ingress_port() -> None:
    probes = {probe["type"]: probe for probe in gateway_container()["probes"]}
    assert set(probes) == {"Startup", "Liveness", "Readiness"}
    assert probes["Startup"]["httpGet"]["path"] == "/healthz"
    assert probes["Liveness"]["httpGet"]["path"] == "/healthz"
    assert probes["Readiness"]["httpGet"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["httpGet"]["port"] == "targetPort"
        assert 1 <= probe["periodSeconds"] <= 240 and 1 <= probe["timeoutSeconds"] <= 240
        assert 1 <= probe.get("failureThreshold", 3) <= 10  # the API's limits
        assert 1 <= probe.get("initialDelaySeconds", 1) <= 60
    # A draining replica answers /readyz 503: it leaves the pool after at most period x threshold.
    readiness = probes["Readiness"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 10


def test_the_port_is_the_one_the_image_listens_on() -> None:
    assert gateway()["parameters"]["targetPort"]["default"] == 8000
    assert gateway_app()["properties"]["configuration"]["ingress"]["targetPort"] == "targetPort"
    assert gateway_env()["REALTALK_GATEWAY_PORT"]["value"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "targetPort"}}
    }
    assert re.search(r"^EXPOSE 8000$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)


def test_the_termination_grace_period_outlasts_the_drain() -> None:
    template = gateway_app()["properties"]["template"]
    assert template["terminationGracePeriodSeconds"] == "terminationGracePeriodSeconds"
    grace = gateway()["variables"]["terminationGracePeriodSeconds"]["value"]["operator"]
    assert grace == {
        "type": "add",
        "operands": {"operand_1": "drainSeconds", "operand_2": "drainMarginSeconds"},
    }
    margin = gateway()["parameters"]["drainMarginSeconds"]
    assert decorators(margin)["min_value"] >= 5
    assert gateway_env()["REALTALK_GATEWAY_DRAIN_S"]["value"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "drainSeconds"}}
    }
    drain_default = gateway()["parameters"]["drainSeconds"]["default"]
    assert drain_default == 20 and drain_default + margin["default"] == 45
    assert body(main_module("gateway"))["params"]["drainSeconds"] == "gatewayDrainSeconds"
    assert bicep("main.bicep")["parameters"]["gatewayDrainSeconds"]["default"] == drain_default


def test_ingress_is_external_https_that_carries_websockets() -> None:
    ingress = gateway_app()["properties"]["configuration"]["ingress"]
    assert ingress["external"] is True
    assert ingress["transport"] in ("auto", "http")  # HTTP/1.1 upgrade; not 'http2' or 'tcp'
    assert ingress["allowInsecure"] is False
    assert ingress.get("stickySessions", {"affinity": "none"})["affinity"] == "none"  # replicas are stateless


def test_an_http_concurrency_rule_scales_between_min_and_max_replicas() -> None:
    scale = gateway_app()["properties"]["template"]["scale"]
    assert scale["minReplicas"] == "minReplicas" and scale["maxReplicas"] == "maxReplicas"
    (rule,) = scale["rules"]
    assert rule["http"]["metadata"]["concurrentRequests"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "concurrentRequests"}}
    }
    parameters = gateway()["parameters"]
    assert parameters["minReplicas"]["default"] >= 1  # no cold start for a voice call
    assert parameters["maxReplicas"]["default"] > parameters["minReplicas"]["default"]
    # Scale out before a replica refuses sessions at REALTALK_GATEWAY_MAX_SESSIONS.
    assert parameters["concurrentRequests"]["default"] < parameters["maxSessions"]["default"]


# ----- Optional: Entra ID sign-in, PostgreSQL ----------------------------------------------------


def test_entra_sign_in_is_optional_and_then_trusts_the_principal_header() -> None:
    tree = gateway()
    auth_resource = only_resource(tree, "Microsoft.App/containerApps/authConfigs")
    assert condition(auth_resource) == "authEnabled"
    auth = body(auth_resource)
    assert auth["parent"] == "app" and auth["name"] == "current"
    assert auth["properties"]["platform"]["enabled"] is True
    validation = auth["properties"]["globalValidation"]
    assert tree["parameters"]["authUnauthenticatedAction"]["default"] == "RedirectToLoginPage"
    assert set(validation["excludedPaths"]) == {"/healthz", "/readyz"}
    aad = auth["properties"]["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert (
        aad["registration"]["openIdIssuer"]
        == "${environment().authentication.loginEndpoint}${authTenantId}/v2.0"
    )
    principal = tree["variables"]["principalHeaderEnv"]["value"]["operator"]
    assert principal["operands"]["condition"] == "authEnabled"
    assert principal["operands"]["true_value"] == [
        {"name": "REALTALK_GATEWAY_TRUST_PRINCIPAL_HEADER", "value": "true"}
    ]
    assert principal["operands"]["false_value"] == []
    assert bicep("main.bicep")["variables"]["authEnabled"]["value"] == {
        "operator": {
            "type": "not",
            "operands": {
                "bool_value": {"function": {"type": "empty", "parameters": {"item_to_test": "authClientId"}}}
            },
        }
    }


def test_postgresql_is_optional_entra_only_with_the_gateway_identity_as_administrator() -> None:
    assert condition(main_module("postgres")) == "postgresEnabled"
    assert bicep("main.bicep")["parameters"]["postgresEnabled"]["default"] is False
    tree = bicep("modules/postgres.bicep")
    server = body(only_resource(tree, "Microsoft.DBforPostgreSQL/flexibleServers"))
    assert server["properties"]["authConfig"]["activeDirectoryAuth"] == "Enabled"
    assert server["properties"]["authConfig"]["passwordAuth"] == "Disabled"
    assert "administratorLogin" not in server["properties"]
    assert "administratorLoginPassword" not in server["properties"]
    admin = body(only_resource(tree, "Microsoft.DBforPostgreSQL/flexibleServers/administrators"))
    assert admin["name"] == "adminPrincipalId"
    assert admin["properties"]["principalName"] == "adminIdentityName"
    assert admin["properties"]["principalType"] == "ServicePrincipal"
    params = body(main_module("postgres"))["params"]
    assert params["adminPrincipalId"] == accessor("identity", "outputs", "principalId")
    assert params["adminIdentityName"] == accessor("identity", "outputs", "name")
    database = body(only_resource(tree, "Microsoft.DBforPostgreSQL/flexibleServers/databases"))
    assert database["name"] == "databaseName"


def test_the_postgresql_ledger_is_migrated_by_the_gateway_before_it_serves() -> None:
    # An env var the image's `realtalk serve` reads (replicas take turns under an advisory lock),
    # not a command override: the placeholder image of a first provision ignores it, and the
    # first real deploy already migrates, so no second `azd provision` is needed.
    assert "command" not in gateway_container()
    assert gateway_env()["REALTALK_LEDGER_UPGRADE_ON_START"]["value"] == "true"
    variable = Settings.model_fields["ledger_upgrade_on_start"].validation_alias
    assert variable == "REALTALK_LEDGER_UPGRADE_ON_START"
    assert body(main_module("gateway"))["params"]["upgradeLedgerOnStart"] == "postgresEnabled"


# ----- The gateway secret: made once by azd's preprovision hook ----------------------------------

FAKE_AZD = """#!/bin/sh
# A stand-in for `azd env get-value NAME` / `azd env set NAME VALUE` on a KEY=VALUE file.
store="$FAKE_AZD_ENV"
if [ "$1 $2" = "env get-value" ]; then
  value=$(sed -n "s/^$3=//p" "$store")
  if [ -z "$value" ]; then echo "ERROR: key '$3' not found in the environment values" >&2; exit 1; fi
  printf '%s\\n' "$value"
elif [ "$1 $2" = "env set" ]; then
  grep -v "^$3=" "$store" > "$store.new" || true
  printf '%s=%s\\n' "$3" "$4" >> "$store.new"
  mv "$store.new" "$store"
else
  exit 2
fi
"""


@pytest.fixture
def run_preprovision_hook(tmp_path: Path) -> Any:
    hook = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())["hooks"]["preprovision"]["posix"]
    assert hook["shell"] == "sh"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "azd").write_text(FAKE_AZD)
    (bin_dir / "azd").chmod(0o755)
    store = tmp_path / "env"
    store.write_text("AZURE_ENV_NAME=test\n")

    def run() -> tuple[dict[str, str], str]:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_AZD_ENV": str(store)}
        done = subprocess.run(
            ["sh", "-c", hook["run"]], env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        values = dict(line.split("=", 1) for line in store.read_text().splitlines())
        return values, done.stdout + done.stderr

    run.store = store  # type: ignore[attr-defined]
    return run


def test_the_preprovision_hook_makes_a_random_gateway_secret_once(run_preprovision_hook: Any) -> None:
    values, output = run_preprovision_hook()
    secret = values["REALTALK_GATEWAY_SECRET"]
    assert re.fullmatch(r"[0-9a-f]{64}", secret)  # 256 random bits, above the gateway's 32 characters
    assert secret not in output
    again, _ = run_preprovision_hook()
    assert again["REALTALK_GATEWAY_SECRET"] == secret
    other_store = dict(values)
    run_preprovision_hook.store.write_text("AZURE_ENV_NAME=test\n")
    fresh, _ = run_preprovision_hook()
    assert fresh["REALTALK_GATEWAY_SECRET"] != other_store["REALTALK_GATEWAY_SECRET"]


def test_the_preprovision_hook_keeps_a_secret_someone_set(run_preprovision_hook: Any) -> None:
    chosen = "a-secret-chosen-by-the-operator-0123456789"
    run_preprovision_hook.store.write_text(f"REALTALK_GATEWAY_SECRET={chosen}\n")
    values, output = run_preprovision_hook()
    assert values["REALTALK_GATEWAY_SECRET"] == chosen
    assert chosen not in output


# ----- checkov ----------------------------------------------------------------------------------


def checkov_binary() -> str:
    candidates = [os.environ.get("REALTALK_CHECKOV", ""), str(REPO_ROOT / ".venv/checkov/bin/checkov")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("checkov")
    if found:
        return found
    message = "needs checkov: `make pytest` installs it in .venv/checkov (or set REALTALK_CHECKOV)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def skip_comments() -> dict[str, list[tuple[str, str]]]:
    """``{file: [(check id, reason), ...]}`` for every ``// checkov:skip=`` in the Bicep files."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path in BICEP_FILES:
        for line in path.read_text().splitlines():
            match = SKIP_COMMENT.search(line.strip())
            if match:
                found.setdefault(path.name, []).append((match.group(1), (match.group(2) or "").strip()))
    return found


@pytest.mark.slow
def test_checkov_passes_and_every_skip_is_named_and_justified() -> None:
    done = subprocess.run(
        [checkov_binary(), "-d", str(INFRA), "--framework", "bicep", "--skip-download", "--output", "json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_S, check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_NO_UPDATE_CHECK": "true"},
    )  # fmt: skip
    assert done.returncode == 0, (
        f"checkov failed ({done.returncode}):\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    )
    report = json.loads(done.stdout)
    results = report["results"]
    assert results["failed_checks"] == []
    assert report["summary"]["passed"] > 0  # it did check something
    skipped = {(Path(check["file_path"]).name, check["check_id"]) for check in results["skipped_checks"]}
    comments = skip_comments()
    declared = {(name, check_id) for name, entries in comments.items() for check_id, _ in entries}
    # Every skip has a reason, and every skip comment silences a check that would run.
    for name, entries in comments.items():
        for check_id, reason in entries:
            assert len(reason) >= 20, f"{name}: {check_id} is skipped without a reason"
    assert skipped == declared, f"reported {sorted(skipped)}, declared {sorted(declared)}"
