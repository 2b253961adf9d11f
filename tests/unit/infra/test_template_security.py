"""Security properties of the CloudFormation templates, read from the templates themselves."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.unit.infra.conftest import TEMPLATE_NAMES, resources

#: Buckets that may use SSE-S3: S3 server access logs and load balancer logs
#: can only be written with it (every other bucket is SSE-KMS).
LOG_BUCKETS = {"AccessLogBucket"}

#: Actions AWS does not scope to a resource, the only ones allowed on Resource "*".
RESOURCELESS_ACTIONS = {
    "cloudwatch:PutMetricData",
    "ec2:DescribeTags",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ecr:GetAuthorizationToken",
}

OPEN_CIDRS = {"0.0.0.0/0", "::/0"}


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resolve(template: dict[str, Any], value: Any) -> Any:
    """A literal, or the default of the parameter a Ref names."""
    if isinstance(value, dict) and "Ref" in value:
        return template.get("Parameters", {}).get(value["Ref"], {}).get("Default", value)
    return value


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return _listed(document.get("Statement", []))


def _identity_policies(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, props in resources(template, "AWS::IAM::Role"):
        for policy in props.get("Policies", []):
            found.append((f"{name}/{policy['PolicyName']}", policy["PolicyDocument"]))
    for name, props in resources(template, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        found.append((name, props["PolicyDocument"]))
    return found


def _bucket_policies(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        props["Bucket"]["Ref"]: props["PolicyDocument"]
        for _, props in resources(template, "AWS::S3::BucketPolicy")
    }


def _ingress_rules(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rules = []
    for name, props in resources(template, "AWS::EC2::SecurityGroup"):
        rules += [(name, rule) for rule in props.get("SecurityGroupIngress", [])]
    for _, props in resources(template, "AWS::EC2::SecurityGroupIngress"):
        rules.append((props["GroupId"]["Ref"], props))
    return rules


@pytest.fixture(params=TEMPLATE_NAMES)
def template(request: pytest.FixtureRequest, templates: dict[str, Any]) -> dict[str, Any]:
    chosen: dict[str, Any] = templates[request.param]
    return chosen


def test_templates_every_bucket_is_encrypted(template: dict[str, Any]) -> None:
    buckets = dict(resources(template, "AWS::S3::Bucket"))
    assert buckets
    for name, props in buckets.items():
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        for rule in rules:
            default = rule["ServerSideEncryptionByDefault"]
            if name in LOG_BUCKETS:
                assert default["SSEAlgorithm"] in ("AES256", "aws:kms"), name
            else:
                assert default["SSEAlgorithm"] == "aws:kms", name
                assert "KMSMasterKeyID" in default, name
                assert rule.get("BucketKeyEnabled") is True, name


def test_templates_every_bucket_denies_requests_without_tls(template: dict[str, Any]) -> None:
    policies = _bucket_policies(template)
    for name, _ in resources(template, "AWS::S3::Bucket"):
        assert name in policies, f"{name} has no bucket policy"
        denials = [
            s
            for s in _statements(policies[name])
            if s["Effect"] == "Deny"
            and s.get("Principal") == "*"
            and "s3:*" in _listed(s["Action"])
            and str(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower()
            == "false"
        ]
        assert len(denials) == 1, f"{name} does not deny requests without TLS"
        covered = _listed(denials[0]["Resource"])
        assert {"Fn::GetAtt": [name, "Arn"]} in covered, name
        assert {"Fn::Sub": f"${{{name}.Arn}}/*"} in covered, name


def test_templates_every_bucket_is_private_versioned_expiring_and_logged(
    template: dict[str, Any],
) -> None:
    for name, props in resources(template, "AWS::S3::Bucket"):
        block = props["PublicAccessBlockConfiguration"]
        assert all(
            block[k] is True
            for k in (
                "BlockPublicAcls",
                "BlockPublicPolicy",
                "IgnorePublicAcls",
                "RestrictPublicBuckets",
            )
        ), name
        assert props["VersioningConfiguration"]["Status"] == "Enabled", name
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        assert props["LifecycleConfiguration"]["Rules"], name
        if name not in LOG_BUCKETS:
            logging = props["LoggingConfiguration"]
            assert logging["DestinationBucketName"] == {"Ref": "AccessLogBucket"}, name


def test_templates_no_resource_policy_allows_everyone(template: dict[str, Any]) -> None:
    documents = list(_bucket_policies(template).values()) + [
        props["KeyPolicy"] for _, props in resources(template, "AWS::KMS::Key")
    ]
    for document in documents:
        for statement in _statements(document):
            if statement["Effect"] == "Allow":
                assert statement["Principal"] != "*", statement
                assert statement["Principal"] != {"AWS": "*"}, statement


def test_templates_no_ingress_is_open_to_the_world_but_https_on_the_load_balancer(
    template: dict[str, Any],
) -> None:
    rules = _ingress_rules(template)
    assert rules
    for group, rule in rules:
        ports = (rule["IpProtocol"], rule["FromPort"], rule["ToPort"])
        assert rule["IpProtocol"] == "tcp", (group, rule)
        assert rule["FromPort"] == rule["ToPort"], (group, rule)
        assert rule["FromPort"] != 22, f"{group} opens SSH; nodes are reached through SSM"
        assert rule.get("Description"), (group, rule)
        cidrs = {_resolve(template, rule[k]) for k in ("CidrIp", "CidrIpv6") if k in rule}
        if cidrs:
            # A CIDR rule is the public ingest's: HTTPS on the load balancer only.
            assert group == "LoadBalancerSecurityGroup", (group, rule)
            assert ports == ("tcp", 443, 443), (group, rule)
        else:
            assert "SourceSecurityGroupId" in rule, (group, rule)
    open_rules = [
        (group, r)
        for group, r in rules
        if {_resolve(template, r.get(k)) for k in ("CidrIp", "CidrIpv6")} & OPEN_CIDRS
    ]
    assert [(g, r["FromPort"]) for g, r in open_rules] == [("LoadBalancerSecurityGroup", 443)]


def test_templates_every_log_group_is_encrypted_and_expires(template: dict[str, Any]) -> None:
    groups = dict(resources(template, "AWS::Logs::LogGroup"))
    assert groups
    for name, props in groups.items():
        assert "KmsKeyId" in props, name
        assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_templates_every_queue_and_topic_is_encrypted(template: dict[str, Any]) -> None:
    topics = dict(resources(template, "AWS::SNS::Topic"))
    assert topics, "the alarms' topic is missing"
    for name, props in topics.items():
        assert "KmsMasterKeyId" in props, name
    for name, props in resources(template, "AWS::SQS::Queue"):
        assert "KmsMasterKeyId" in props or props.get("SqsManagedSseEnabled") is True, name


def test_templates_no_iam_policy_allows_wildcard_actions(template: dict[str, Any]) -> None:
    policies = _identity_policies(template)
    assert policies
    for name, document in policies:
        for statement in _statements(document):
            assert "NotAction" not in statement and "NotResource" not in statement, name
            if statement["Effect"] != "Allow":
                continue
            actions = _listed(statement["Action"])
            for action in actions:
                assert action != "*" and not action.endswith(":*"), f"{name}: {action}"
            if "*" in _listed(statement["Resource"]):
                unscoped = set(actions) - RESOURCELESS_ACTIONS
                assert not unscoped, f"{name}: {sorted(unscoped)} on every resource"
                if "cloudwatch:PutMetricData" in actions:
                    assert "cloudwatch:namespace" in str(statement.get("Condition")), name


def test_templates_key_policies_grant_no_wildcard_actions(template: dict[str, Any]) -> None:
    for name, props in resources(template, "AWS::KMS::Key"):
        for statement in _statements(props["KeyPolicy"]):
            for action in _listed(statement["Action"]):
                assert action not in ("*", "kms:*"), name


def test_templates_every_kms_key_rotates(template: dict[str, Any]) -> None:
    keys = dict(resources(template, "AWS::KMS::Key"))
    assert keys
    for name, props in keys.items():
        assert props["EnableKeyRotation"] is True, name


def test_templates_ebs_is_encrypted_and_instances_use_ssm_not_ssh(
    template: dict[str, Any],
) -> None:
    for name, props in resources(template, "AWS::EC2::Volume"):
        assert props["Encrypted"] is True and "KmsKeyId" in props, name
    launch_templates = dict(resources(template, "AWS::EC2::LaunchTemplate"))
    assert launch_templates
    roles = dict(resources(template, "AWS::IAM::Role"))
    profiles = dict(resources(template, "AWS::IAM::InstanceProfile"))
    for name, props in launch_templates.items():
        data = props["LaunchTemplateData"]
        assert "KeyName" not in data, f"{name} installs an SSH key"
        assert data["MetadataOptions"]["HttpTokens"] == "required", name
        for mapping in data["BlockDeviceMappings"]:
            assert mapping["Ebs"]["Encrypted"] is True, name
            assert "KmsKeyId" in mapping["Ebs"], name
        profile = data["IamInstanceProfile"]["Arn"]["Fn::GetAtt"][0]
        (role,) = [r["Ref"] for r in profiles[profile]["Roles"]]
        managed = str(roles[role]["ManagedPolicyArns"])
        assert "AmazonSSMManagedInstanceCore" in managed, name


def test_templates_ingest_is_behind_https_with_a_waf_rate_limit(template: dict[str, Any]) -> None:
    (listener,) = [p for _, p in resources(template, "AWS::ElasticLoadBalancingV2::Listener")]
    assert (listener["Protocol"], listener["Port"]) == ("HTTPS", 443)
    assert listener["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    (acl,) = [p for _, p in resources(template, "AWS::WAFv2::WebACL")]
    rates = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    assert rates and rates[0]["Action"] == {"Block": {}}
    assert rates[0]["Statement"]["RateBasedStatement"]["Limit"] == {"Ref": "WafRateLimit"}
    (association,) = [p for _, p in resources(template, "AWS::WAFv2::WebACLAssociation")]
    assert association["ResourceArn"] == {"Ref": "LoadBalancer"}
    shield = template["Resources"]["ShieldProtection"]
    assert shield["Condition"] == "UseShieldAdvanced"


def test_templates_checkov_skips_are_justified(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip["id"].startswith("CKV"), name
            assert len(skip.get("comment", "")) >= 30, f"{name}: skip {skip['id']} needs a reason"


def test_templates_boot_the_nodes_with_the_same_script(templates: dict[str, Any]) -> None:
    scripts = {name: t["Mappings"]["Bootstrap"] for name, t in templates.items()}
    assert scripts["self-managed"] == scripts["managed"]
    script = scripts["managed"]["Node"]["Script"]
    assert "pulsecast deploy node setup" in script
    assert "cfn-signal" in script


def test_managed_bus_is_private_tls_and_iam_authenticated(templates: dict[str, Any]) -> None:
    (msk,) = [p for _, p in resources(templates["managed"], "AWS::MSK::Cluster")]
    assert msk["EncryptionInfo"]["EncryptionInTransit"] == {
        "ClientBroker": "TLS",
        "InCluster": True,
    }
    assert "DataVolumeKMSKeyId" in msk["EncryptionInfo"]["EncryptionAtRest"]
    assert msk["ClientAuthentication"]["Sasl"]["Iam"] == {"Enabled": True}
    assert msk["ClientAuthentication"]["Unauthenticated"] == {"Enabled": False}
    assert msk["BrokerNodeGroupInfo"]["ConnectivityInfo"]["PublicAccess"] == {"Type": "DISABLED"}
    assert msk["LoggingInfo"]["BrokerLogs"]["CloudWatchLogs"]["Enabled"] is True


def test_managed_warehouse_catalog_and_queries_are_encrypted(templates: dict[str, Any]) -> None:
    managed = templates["managed"]
    (namespace,) = [p for _, p in resources(managed, "AWS::RedshiftServerless::Namespace")]
    assert "KmsKeyId" in namespace and namespace["ManageAdminPassword"] is True
    assert "AdminUserPassword" not in namespace
    (workgroup,) = [p for _, p in resources(managed, "AWS::RedshiftServerless::Workgroup")]
    assert workgroup["PubliclyAccessible"] is False
    assert {"ParameterKey": "require_ssl", "ParameterValue": "true"} in workgroup[
        "ConfigParameters"
    ]
    (athena,) = [p for _, p in resources(managed, "AWS::Athena::WorkGroup")]
    config = athena["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    encryption = config["ResultConfiguration"]["EncryptionConfiguration"]
    assert encryption["EncryptionOption"] == "SSE_KMS"
    tables = dict(resources(managed, "AWS::Glue::Table"))
    assert "silver_telemetry" in {t["TableInput"]["Name"] for t in tables.values()}
    for name, table in tables.items():
        assert table["TableInput"]["Parameters"]["table_type"] == "DELTA", name


def test_managed_trail_is_encrypted_validated_and_multi_region(templates: dict[str, Any]) -> None:
    (trail,) = [p for _, p in resources(templates["managed"], "AWS::CloudTrail::Trail")]
    assert trail["IsMultiRegionTrail"] is True
    assert trail["EnableLogFileValidation"] is True
    assert trail["KMSKeyId"] == {"Fn::GetAtt": ["LogKey", "Arn"]}
    assert trail["S3BucketName"] == {"Ref": "TrailBucket"}


def test_managed_model_endpoint_is_optional_and_encrypted(templates: dict[str, Any]) -> None:
    managed = templates["managed"]
    sagemaker = {
        name: r
        for name, r in managed["Resources"].items()
        if r["Type"].startswith("AWS::SageMaker")
    }
    assert set(sagemaker) == {"Model", "ModelEndpointConfig", "ModelEndpoint"}
    assert all(r["Condition"] == "CreateModelEndpoint" for r in sagemaker.values())
    assert "KmsKeyId" in sagemaker["ModelEndpointConfig"]["Properties"]
    assert sagemaker["Model"]["Properties"]["EnableNetworkIsolation"] is True


#: pulsecast's Prometheus alert rules, which the CloudWatch alarms mirror by name.
RULES_FILE = REPO / "infra" / "prometheus" / "rules" / "pulsecast.yml"


def _alarm_rules(template: dict[str, Any]) -> dict[str, str]:
    """Alarm names (``<prefix>-<AlertName>[-<component>]``) by the alert rule they mirror."""
    alarms = dict(resources(template, "AWS::CloudWatch::Alarm"))
    names = {}
    for alarm in alarms.values():
        name = alarm["AlarmName"]["Fn::Sub"].removeprefix("${StackPrefix}-")
        names[name] = name.split("-")[0]
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name
    return names


def test_managed_alarms_mirror_every_alert_rule(templates: dict[str, Any]) -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert len(alerts) == 9
    assert set(_alarm_rules(templates["managed"]).values()) == alerts


def test_self_managed_alarms_watch_the_nodes(templates: dict[str, Any]) -> None:
    assert sorted(_alarm_rules(templates["self-managed"])) == [
        "PulsecastComponentDown-hdfs",
        "PulsecastComponentDown-ingest",
        "PulsecastComponentDown-kafka",
        "PulsecastComponentDown-spark",
        "PulsecastDiskAlmostFull-hdfs",
        "PulsecastDiskAlmostFull-kafka",
        "PulsecastDiskAlmostFull-spark",
    ]


def _user_data(launch_template: dict[str, Any]) -> str:
    header: str = launch_template["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    return header


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_templates_launch_templates_give_the_boot_script_what_it_reads(
    templates: dict[str, Any], name: str
) -> None:
    template = templates[name]
    script = template["Mappings"]["Bootstrap"]["Node"]["Script"]
    assigned_in_script = set(re.findall(r"^\s*([A-Z_]+)=", script, re.MULTILINE))
    read = set(re.findall(r"\$\{?([A-Z][A-Z_]+)", script)) - assigned_in_script
    groups = {
        logical: resource
        for logical, resource in template["Resources"].items()
        if resource["Type"] == "AWS::AutoScaling::AutoScalingGroup"
    }
    for logical, props in resources(template, "AWS::EC2::LaunchTemplate"):
        header = _user_data(props)
        assert header.startswith("#!/bin/bash\n"), logical
        assert header.rstrip().endswith("${Script}"), logical
        assigned = set(re.findall(r"^([A-Z_]+)=", header, re.MULTILINE))
        assert read - {"AWS_DEFAULT_REGION"} <= assigned, (logical, read - assigned)
        # The group the script signals is the one launching it, and it waits for the signal.
        (group,) = re.findall(r"^GROUP=(\w+)$", header, re.MULTILINE)
        assert groups[group]["Properties"]["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": logical}
        assert "ResourceSignal" in groups[group]["CreationPolicy"]


def test_managed_dashboard_is_valid_json(templates: dict[str, Any]) -> None:
    body, variables = templates["managed"]["Resources"]["Dashboard"]["Properties"]["DashboardBody"][
        "Fn::Sub"
    ]
    assert set(variables) == {"Alarms"}
    filled = re.sub(r"\$\{[^}]+\}", "x", body.replace("[${Alarms}]", '["x"]'))
    widgets = json.loads(filled)["widgets"]
    assert {w["type"] for w in widgets} == {"alarm", "metric"}


def test_templates_bucket_names_fit_s3s_limit_for_the_longest_prefix(
    template: dict[str, Any],
) -> None:
    longest = {
        "${StackPrefix}": "p" * 16,  # StackPrefix's AllowedPattern allows 16 characters
        "${AWS::AccountId}": "1" * 12,
        "${AWS::Region}": "ap-southeast-7",
    }
    assert template["Parameters"]["StackPrefix"]["AllowedPattern"] == "^[a-z][a-z0-9-]{1,15}$"
    for name, props in resources(template, "AWS::S3::Bucket"):
        bucket = props["BucketName"]["Fn::Sub"]
        for variable, value in longest.items():
            bucket = bucket.replace(variable, value)
        assert "$" not in bucket and len(bucket) <= 63, (name, bucket)
