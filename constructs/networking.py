"""Private networking (context key ``vpc``): every function in private subnets, reaching the
Atlas cluster through an Atlas private endpoint, so the project's IP access list can stay closed.

Atlas's side is a private endpoint service (``MongoDB::Atlas::PrivateEndpointService``, which
gives the AWS endpoint service name); this side an interface VPC endpoint to that service, in
the functions' subnets, admitting the functions' security group; and
``MongoDB::Atlas::PrivateEndpointAWS`` registers that endpoint with Atlas. The functions then
connect to the cluster's private-endpoint address (Atlas shows it as the "private endpoint"
connection string: give it as ``mongodbUri`` in IAM mode, or put it in the secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Acknowledgment, Annotations, Aws, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam

from constructs import Construct

CREATE_VPC = "create"
"""``vpc=create``: the app makes the VPC (two zones, private subnets with a NAT gateway for the
AWS APIs the functions call)."""

ATLAS_PRIVATE_LINK_PORTS = ec2.Port.tcp_range(1024, 65535)
"""Atlas maps each cluster node behind a private endpoint to its own port in this range."""

VPC_ACCESS_POLICY = "service-role/AWSLambdaVPCAccessExecutionRole"
"""What a function in a VPC needs of its role: the network interfaces Lambda makes for it."""


@dataclass(frozen=True, kw_only=True)
class VpcPlacement:
    """Where the functions run: a VPC the app creates, or an existing one's private subnets."""

    project_id: str
    """Atlas project of the cluster (``atlasProjectId``): the private endpoint is made there."""
    profile: str = "default"
    """Atlas API key profile (``atlasProfile``)."""
    vpc_id: str | None = None
    """An existing VPC (``vpc=vpc-...``); ``None``: ``vpc=create``."""
    subnet_ids: tuple[str, ...] = ()
    """The existing VPC's private subnets for the functions and the endpoint (``vpcSubnetIds``),
    given rather than looked up, so synth needs no AWS account."""


class PrivateNetwork(Construct):
    """The VPC, the functions' security group and the Atlas private endpoint (shared stack)."""

    def __init__(self, scope: Construct, construct_id: str, placement: VpcPlacement) -> None:
        super().__init__(scope, construct_id)
        if placement.vpc_id is None:
            vpc = ec2.Vpc(
                self,
                "Vpc",
                max_azs=2,
                nat_gateways=1,
                subnet_configuration=[
                    ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                    ec2.SubnetConfiguration(
                        name="functions", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                    ),
                ],
                flow_logs={"Rejected": ec2.FlowLogOptions(traffic_type=ec2.FlowLogTrafficType.REJECT)},
            )
            self.vpc: ec2.IVpc = vpc
            self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        else:
            self.vpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=placement.vpc_id,
                availability_zones=[f"zone-of-{subnet}" for subnet in placement.subnet_ids],
                private_subnet_ids=list(placement.subnet_ids),
            )
            self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
            # Given, not looked up: nothing here reads the subnets' route tables.
            Annotations.of(self).acknowledge_warning(
                "@aws-cdk/aws-ec2:noSubnetRouteTableId",
                "The functions and the endpoint only need the subnet ids.",
            )
        self.security_group = ec2.SecurityGroup(
            self,
            "FunctionsSecurityGroup",
            vpc=self.vpc,
            description="Workflow functions: out to the Atlas private endpoint and AWS APIs",
            allow_all_outbound=True,
        )
        endpoint_group = ec2.SecurityGroup(
            self,
            "AtlasEndpointSecurityGroup",
            vpc=self.vpc,
            description="Atlas private endpoint: in from the workflow functions only",
            allow_all_outbound=False,
        )
        endpoint_group.add_ingress_rule(
            self.security_group, ATLAS_PRIVATE_LINK_PORTS, "MongoDB from the workflow functions"
        )
        self.endpoint_service, self.endpoint = self._atlas_endpoint(placement, endpoint_group)

    def _atlas_endpoint(
        self, placement: VpcPlacement, group: ec2.SecurityGroup
    ) -> tuple[object, ec2.InterfaceVpcEndpoint]:
        from awscdk_resources_mongodbatlas import (
            CfnPrivateEndpointAws,
            CfnPrivateEndpointService,
            CfnPrivateEndpointServicePropsCloudProvider,
        )

        service = CfnPrivateEndpointService(
            self,
            "AtlasEndpointService",
            project_id=placement.project_id,
            profile=placement.profile,
            region=Aws.REGION,
            cloud_provider=CfnPrivateEndpointServicePropsCloudProvider.AWS,
        )
        endpoint = ec2.InterfaceVpcEndpoint(
            self,
            "AtlasEndpoint",
            vpc=self.vpc,
            service=ec2.InterfaceVpcEndpointService(service.attr_endpoint_service_name),
            subnets=self.subnets,
            security_groups=[group],
            private_dns_enabled=False,
            open=False,
        )
        registration = CfnPrivateEndpointAws(
            self,
            "AtlasEndpointRegistration",
            project_id=placement.project_id,
            profile=placement.profile,
            endpoint_service_id=service.attr_id,
            id=endpoint.vpc_endpoint_id,
        )
        for resource in (service, registration):
            # cfn-lint has no schema for these third-party types (E3006); our template tests check them.
            resource.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E3006"]}})
        return service, endpoint


def in_network(network: PrivateNetwork | None, role: iam.IRole) -> dict[str, Any]:
    """The keyword arguments of ``lambda_.Function`` that put it in the private subnets (none
    without a network). ``role``, the function's own, gets AWS's managed policy for the network
    interfaces Lambda makes in the subnets (CDK adds it only to roles it makes itself)."""
    if network is None:
        return {}
    role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name(VPC_ACCESS_POLICY))
    Validations.of(role).acknowledge(
        Acknowledgment(
            id=f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{VPC_ACCESS_POLICY}]",
            reason="AWS's policy for a function's network interfaces in its VPC subnets, which "
            "Lambda manages for the function in a VPC.",
        )
    )
    return {"vpc": network.vpc, "vpc_subnets": network.subnets, "security_groups": [network.security_group]}
