"""The ``sparkify-infra`` command line: its parser and entry point, over the cluster commands
(:mod:`sparkify_dagster.cli.infra`) and the Serverless ones (:mod:`sparkify_dagster.cli.infra_serverless`).

Apart from both so that neither imports the other's user (the Serverless commands reuse the shared
pieces of ``infra``: the role, ingress rules, dwh.cfg, messages).
"""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from sparkify_dagster.cli import infra
from sparkify_dagster.cli import infra_serverless as serverless
from sparkify_dagster.cli.args import positive_int

_EPILOG = f"""\
environment:
  {infra.PASSWORD_ENV}     master password for `up` (required; never printed, logged or written)
  {infra.CFG_ENV}      dwh.cfg written by `up` (default: ./dwh.cfg)
  AWS_REGION, AWS_DEFAULT_REGION   region (default: {infra.DEFAULT_REGION})
  AWS_ENDPOINT_URL      honoured by boto3 (e.g. a moto server); credentials as usual for boto3

exit codes:
  0  success (`status`: the cluster, or with --serverless the workgroup, exists, whatever its state)
  1  AWS error, or the cluster (namespace, workgroup) did not come up / go away in time
  2  usage or configuration error (bad arguments, {infra.PASSWORD_ENV} missing or invalid, `down`
     for a cluster when dwh.cfg names a workgroup or the other way round)
  3  `status` only: the cluster (with --serverless: the workgroup) was not found
"""


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of sparkify-infra (subcommands up, status, down)."""
    parser = argparse.ArgumentParser(
        prog=infra.PROG,
        description="Create, inspect and delete the Sparkify Redshift cluster (or, with --serverless,\n"
                    "a Redshift Serverless namespace and workgroup) and the IAM role it uses to read\n"
                    "S3, and write the endpoint into dwh.cfg.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--serverless", action="store_true",
                        help="a Redshift Serverless namespace and workgroup instead of a cluster "
                             "(give it to up, status and down alike)")
    common.add_argument("--cluster-id", default="sparkify",
                        help="cluster identifier (default: sparkify; cluster only)")
    common.add_argument("--workgroup", type=serverless.parse_name, default=serverless.DEFAULT_WORKGROUP,
                        help=f"Serverless workgroup (default: {serverless.DEFAULT_WORKGROUP}; "
                             "with --serverless)")
    common.add_argument("--namespace", type=serverless.parse_name, default=serverless.DEFAULT_NAMESPACE,
                        help=f"Serverless namespace (default: {serverless.DEFAULT_NAMESPACE}; "
                             "with --serverless)")
    common.add_argument("--role-name", default="sparkify-redshift-s3-read",
                        help="IAM role Redshift assumes (default: sparkify-redshift-s3-read)")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--timeout", type=infra._positive_float, default=1800.0,
                         help="seconds to wait for the cluster, namespace or workgroup (default: 1800)")
    waiting.add_argument("--poll-interval", type=infra._positive_float, default=15.0,
                         help="seconds between polls of its state (default: 15)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,status,down}")

    up = sub.add_parser(
        "up", parents=[common, waiting], epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="create (or reuse) the role and cluster (or workgroup), open the port to --cidr, "
             "write dwh.cfg",
        description="Create (or reuse) the IAM role and the cluster (with --serverless: the namespace\n"
                    "and workgroup), wait until it is available, allow tcp 5439 from --cidr only,\n"
                    "and write the endpoint and role into dwh.cfg.",
    )
    up.add_argument("--cidr", required=True, type=infra.parse_cidr,
                    help="the only network allowed to reach the port, e.g. 203.0.113.7/32 "
                         "(required; 0.0.0.0/0 is accepted with a loud warning)")
    # DC2 node types were deprecated in 2025: new clusters are RA3 (ra3.large is the smallest).
    up.add_argument("--node-type", default="ra3.large",
                    help="node type (default: ra3.large, the smallest RA3 node: new DC2 clusters "
                         "can no longer be created; cluster only)")
    up.add_argument("--nodes", type=positive_int, default=2,
                    help="number of nodes; 1 makes a single-node cluster (default: 2; cluster only)")
    up.add_argument("--base-capacity", type=serverless.parse_base_capacity,
                    default=serverless.DEFAULT_BASE_CAPACITY,
                    help=f"workgroup base capacity in RPUs: {serverless.BASE_CAPACITY_RULE} (default: "
                         f"{serverless.DEFAULT_BASE_CAPACITY}; with --serverless)")
    up.add_argument("--db", default="sparkify", help="database name (default: sparkify)")
    up.add_argument("--user", default="sparkify",
                    help="master (Serverless: admin) user name (default: sparkify)")
    up.add_argument("--bucket", type=infra.parse_bucket,
                    help="S3 bucket the role may read (default: any bucket, '*')")
    up.add_argument("--private", action="store_true",
                    help="do not make the cluster (workgroup) publicly accessible (default: public, "
                         "so that --cidr can reach it from outside the VPC)")

    sub.add_parser("status", parents=[common], epilog=_EPILOG,
                   formatter_class=argparse.RawDescriptionHelpFormatter,
                   help="print the cluster's (or workgroup's) state and endpoint (exit 3 if not found)",
                   description="Print the cluster's state and endpoint and the role's ARN (with\n"
                               "--serverless: the namespace's and workgroup's states, the endpoint,\n"
                               "the base capacity and the role).\n"
                               "Exit 0 if the cluster (workgroup) exists (any state), 3 if it is not found.")
    sub.add_parser("down", parents=[common, waiting], epilog=_EPILOG,
                   formatter_class=argparse.RawDescriptionHelpFormatter,
                   help="delete the cluster (or workgroup and namespace), our ingress rules and the role",
                   description="Revoke the ingress rules `up` added, delete the cluster without a\n"
                               "final snapshot (with --serverless: the workgroup, then the namespace,\n"
                               "without a final snapshot), wait until it is gone, then delete the role\n"
                               "and its policies. Does nothing for what is already gone.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sparkify-infra`` console script."""
    args = build_parser().parse_args(argv)
    commands = ({"up": serverless.cmd_up, "status": serverless.cmd_status, "down": serverless.cmd_down}
                if args.serverless else {"up": infra.cmd_up, "status": infra.cmd_status, "down": infra.cmd_down})
    command = commands[args.command]
    try:
        return command(args)
    except infra.InfraError as exc:
        infra._error(str(exc))
        return exc.exit_code
    except ClientError as exc:
        error = exc.response.get("Error", {})
        infra._error(f"AWS error {error.get('Code', '?')} in {exc.operation_name}: "
               f"{error.get('Message', '(no message)')}")
        return infra.EXIT_FAILURE
    except NoCredentialsError:
        infra._error("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
               "AWS_PROFILE (NoCredentialsError)")
        return infra.EXIT_FAILURE
    except BotoCoreError as exc:
        infra._error(f"AWS call failed ({type(exc).__name__}): {exc}")
        return infra.EXIT_FAILURE
    except KeyboardInterrupt:
        infra._error("interrupted; rerun the same command to continue (it is idempotent)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
