//! The coverage walker: every operation of RunPod's OpenAPI document (`RPB_RUNPOD_OPENAPI`) has a
//! client method, or is listed as pending with the reason.
//!
//! The table maps each `operationId` to the method implementing it. Each mapped entry names the
//! method in a closure (`Client::list_pods`), so removing or renaming a method fails to compile
//! here; the test then fails for every operation of the document that is neither mapped nor
//! pending, for every entry whose `operationId` the document no longer has, and for an
//! operation without an `operationId`.

use std::collections::{BTreeMap, BTreeSet};

use runpod_api::Client;
use serde_json::Value;
use test_support::contract::SPEC_ENV;

/// How the client covers one operation.
enum Coverage {
    /// By this method; `reference` names it so the table cannot outlive the method.
    Method {
        name: &'static str,
        #[expect(dead_code, reason = "it exists to be compiled, not called")]
        reference: fn(),
    },
    /// Not yet; the reason says who is on it.
    Pending { reason: &'static str },
}

macro_rules! method {
    ($operation:literal => $method:ident) => {
        (
            $operation,
            Coverage::Method {
                name: stringify!($method),
                reference: || {
                    let _ = Client::$method;
                },
            },
        )
    };
}

macro_rules! pending {
    ($operation:literal, $reason:expr) => {
        ($operation, Coverage::Pending { reason: $reason })
    };
}

/// Clusters, serverless endpoints and billing beyond pods are issue 15 part B, done on another
/// branch; switch each entry to `method!` when that branch is merged.
const PART_B: &str = "issue 15 part B (clusters, serverless, billing) lands on another branch";

fn coverage_table() -> Vec<(&'static str, Coverage)> {
    vec![
        // Pods.
        method!("listPods" => list_pods),
        method!("createPod" => create_pod),
        method!("getPod" => get_pod),
        method!("updatePod" => update_pod),
        method!("deletePod" => delete_pod),
        method!("podAction" => pod_action),
        method!("getPodLogs" => pod_logs),
        // Account.
        method!("getSshKeys" => ssh_keys),
        method!("updateSshKeys" => set_ssh_keys),
        // Templates.
        method!("listTemplates" => list_templates),
        method!("createTemplate" => create_template),
        method!("getTemplate" => get_template),
        method!("updateTemplate" => update_template),
        method!("deleteTemplate" => delete_template),
        // Network volumes.
        method!("listNetworkVolumes" => list_network_volumes),
        method!("createNetworkVolume" => create_network_volume),
        method!("getNetworkVolume" => get_network_volume),
        method!("updateNetworkVolume" => update_network_volume),
        method!("deleteNetworkVolume" => delete_network_volume),
        // Container registry credentials and ECR delegations.
        method!("listRegistries" => list_registries),
        method!("createRegistry" => create_registry),
        method!("getRegistry" => get_registry),
        method!("deleteRegistry" => delete_registry),
        method!("listDelegations" => list_ecr_delegations),
        method!("createDelegation" => create_ecr_delegation),
        method!("revokeDelegation" => revoke_ecr_delegation),
        // Catalogs.
        method!("listGpuTypes" => list_gpu_types),
        method!("getGpuType" => get_gpu_type),
        method!("listCpuTypes" => list_cpu_types),
        method!("getCpuType" => get_cpu_type),
        method!("listDataCenters" => list_data_centers),
        method!("getDataCenter" => get_data_center),
        method!("listPublicTemplates" => list_public_templates),
        // Billing.
        method!("listPodBilling" => pod_billing),
        pending!("listBilling", PART_B),
        pending!("listServerlessBilling", PART_B),
        pending!("listEndpointBilling", PART_B),
        pending!("listNetworkVolumeBilling", PART_B),
        pending!("listClusterBilling", PART_B),
        // Clusters.
        pending!("listClusters", PART_B),
        pending!("createCluster", PART_B),
        pending!("getCluster", PART_B),
        pending!("updateCluster", PART_B),
        pending!("deleteCluster", PART_B),
        pending!("listClusterPods", PART_B),
        // Serverless endpoints.
        pending!("listEndpoints", PART_B),
        pending!("createEndpoint", PART_B),
        pending!("getEndpoint", PART_B),
        pending!("updateEndpoint", PART_B),
        pending!("deleteEndpoint", PART_B),
        pending!("listEndpointWorkers", PART_B),
        pending!("listEndpointReleases", PART_B),
        pending!("getWorkerLogs", PART_B),
    ]
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(operationId or None, "METHOD /path")` of every operation in the document's `paths`.
fn operations(document: &Value) -> Vec<(Option<String>, String)> {
    let mut found = Vec::new();
    let paths = document["paths"]
        .as_object()
        .expect("the document has paths");
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                let id = operation["operationId"].as_str().map(str::to_owned);
                found.push((id, format!("{} {path}", method.to_uppercase())));
            }
        }
    }
    found
}

#[test]
fn every_operation_of_the_spec_has_a_client_method() {
    let path = std::env::var_os(SPEC_ENV)
        .unwrap_or_else(|| panic!("{SPEC_ENV} is not set: point it at the REST v2 OpenAPI JSON"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.to_string_lossy()));
    let document: Value = serde_json::from_str(&text).expect("the document is JSON");

    let mut table: BTreeMap<&str, Coverage> = BTreeMap::new();
    for (operation, coverage) in coverage_table() {
        assert!(
            table.insert(operation, coverage).is_none(),
            "{operation} is in the table twice"
        );
    }
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let (mut mapped, mut pending) = (0, Vec::new());
    for (id, route) in operations(&document) {
        let Some(id) = id else {
            problems.push(format!("{route}: the document gives it no operationId"));
            continue;
        };
        match table.get(id.as_str()) {
            Some(Coverage::Method { .. }) => mapped += 1,
            Some(Coverage::Pending { reason }) => pending.push(format!("{id} ({route}): {reason}")),
            None => problems.push(format!("{id} ({route}) has no client method")),
        }
        seen.insert(id);
    }
    for (operation, coverage) in &table {
        if !seen.contains(*operation) {
            let name = match coverage {
                Coverage::Method { name, .. } => format!("Client::{name}"),
                Coverage::Pending { .. } => "a pending entry".to_owned(),
            };
            problems.push(format!(
                "{operation} ({name}) is not an operation of the document any more"
            ));
        }
    }
    println!(
        "{mapped} operations have a client method, {} are pending:\n  {}",
        pending.len(),
        pending.join("\n  ")
    );
    assert!(
        problems.is_empty(),
        "the client does not cover the OpenAPI document:\n  {}",
        problems.join("\n  ")
    );
}
