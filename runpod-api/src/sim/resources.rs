//! The HTTP layer of the stored resources: network volumes and templates.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::server::{AppState, ok_json, parse_body, refusal};
use super::templates::TemplateChange;
use super::validate;
use super::volumes::{CreateNetworkVolume, UpdateNetworkVolume};

pub(super) async fn list_volumes(State(state): State<AppState>) -> Response {
    let volumes: Vec<_> = state.world().volumes.list();
    ok_json(StatusCode::OK, &json!({ "networkVolumes": volumes }))
}

pub(super) async fn create_volume(State(state): State<AppState>, body: Bytes) -> Response {
    let request: CreateNetworkVolume =
        match parse_body(&body, &validate::create_volume(), |_, _| {}) {
            Ok(request) => request,
            Err(response) => return response,
        };
    match state.world().volumes.create(&request) {
        Ok(volume) => ok_json(StatusCode::CREATED, &volume),
        Err(error) => refusal(&error),
    }
}

pub(super) async fn get_volume(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.world().volumes.get(&id) {
        Ok(volume) => ok_json(StatusCode::OK, &volume),
        Err(error) => refusal(&error),
    }
}

pub(super) async fn update_volume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let request: UpdateNetworkVolume =
        match parse_body(&body, &validate::update_volume(), |_, _| {}) {
            Ok(request) => request,
            Err(response) => return response,
        };
    match state.world().volumes.update(&id, &request) {
        Ok(volume) => ok_json(StatusCode::OK, &volume),
        Err(error) => refusal(&error),
    }
}

pub(super) async fn delete_volume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let mut world = state.world();
    let users = world.pods_using(&id);
    match world.volumes.delete(&id, &users) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => refusal(&error),
    }
}

pub(super) async fn list_templates(State(state): State<AppState>) -> Response {
    let templates: Vec<_> = state.world().templates.list();
    ok_json(StatusCode::OK, &json!({ "templates": templates }))
}

pub(super) async fn create_template(State(state): State<AppState>, body: Bytes) -> Response {
    let change: TemplateChange = match parse_body(&body, &validate::create_template(), |_, _| {}) {
        Ok(change) => change,
        Err(response) => return response,
    };
    let template = state.world().templates.create(&change);
    ok_json(StatusCode::CREATED, &template)
}

pub(super) async fn get_template(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    match state.world().templates.get(&id) {
        Ok(template) => ok_json(StatusCode::OK, &template),
        Err(error) => refusal(&error),
    }
}

pub(super) async fn update_template(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let change: TemplateChange = match parse_body(&body, &validate::update_template(), |_, _| {}) {
        Ok(change) => change,
        Err(response) => return response,
    };
    match state.world().templates.update(&id, &change) {
        Ok(template) => ok_json(StatusCode::OK, &template),
        Err(error) => refusal(&error),
    }
}

pub(super) async fn delete_template(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    match state.world().templates.delete(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => refusal(&error),
    }
}
