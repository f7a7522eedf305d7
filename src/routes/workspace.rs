//! Workbenches, projects, brand kits and assets (SPEC §6). Reads go straight to the store;
//! every change goes through the owner's workspace actor.

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use actors::workspace::{
    CreateAsset, CreateBrandKit, CreateProject, CreateWorkbench, DeleteAsset, DeleteBrandKit,
    DeleteProject, DeleteWorkbench, UpdateBrandKit, UpdateProject, UpdateWorkbench,
};
use actors::workspace_reads::NewAsset;
use serde::{Deserialize, Deserializer};
use storage::records::*;
use storage::{Reader, Table};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::{self, ColorInput, FontInput, Name};
use crate::error::AppError;
use crate::extract::{ApiJson, Page};
use crate::services::workspace::{self as ws, Access};
use crate::state::AppState;
use crate::views::{AssetView, BrandKitView, Listing, ProjectView, WorkbenchView};

/// `null` and absent told apart: `Some(None)` clears, `None` leaves unchanged.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn parse_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound)
}

fn workbench_view(reads: &impl Reader, w: &WorkbenchRecord) -> Result<WorkbenchView, AppError> {
    Ok(WorkbenchView::new(w, ws::project_ids(reads, w.id)?))
}

fn project_view(reads: &impl Reader, p: &ProjectRecord) -> Result<ProjectView, AppError> {
    Ok(ProjectView::new(
        p,
        ws::effective_kit_id(reads, p)?,
        ws::asset_ids(reads, p.id)?,
    ))
}

// --- Workbenches --------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkbenchCreate {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    default_brand_kit_id: Option<Uuid>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkbenchPatch {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// `null` clears the default.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Uuid>)]
    default_brand_kit_id: Option<Option<Uuid>>,
}

/// The caller's workbenches (staff: everyone's, or one user's with `user_id`).
#[utoipa::path(get, path = "/api/v1/workbenches", tag = "workspace", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("user_id" = Option<Uuid>, Query, description = "staff only")),
    responses((status = 200, body = Listing<WorkbenchView>)))]
#[get("/api/v1/workbenches")]
pub async fn list_workbenches(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    let page = Page::with_filters(&req, &["user_id"])?;
    let (items, next_cursor) = ws::page_owned::<WorkbenchRecord>(
        &*caller.reads,
        &caller.user,
        Table::WorkbenchesByUser,
        &page,
    )?;
    let items = ws::only_visible(&*caller.reads, items)?
        .iter()
        .map(|w| workbench_view(&*caller.reads, w))
        .collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(Listing { items, next_cursor }))
}

/// Create a workbench owned by the caller.
#[utoipa::path(post, path = "/api/v1/workbenches", tag = "workspace", security(("bearer" = [])), request_body = WorkbenchCreate,
    responses((status = 201, body = WorkbenchView), (status = 409, description = "limit_reached", body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/workbenches")]
pub async fn create_workbench(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<WorkbenchCreate>,
) -> Result<HttpResponse, AppError> {
    let body = body.0;
    let name = Name::parse(&body.name, "name")?.into_inner();
    let command = CreateWorkbench {
        name,
        default_brand_kit_id: body.default_brand_kit_id,
    };
    let w = state.workspaces.change(caller.user.id, command).await?;
    Ok(HttpResponse::Created().json(workbench_view(&state.store, &w)?))
}

#[utoipa::path(get, path = "/api/v1/workbenches/{id}", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = WorkbenchView), (status = 404, body = crate::views::ErrorBody)))]
#[get("/api/v1/workbenches/{id}")]
pub async fn get_workbench(
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let w = ws::load::<WorkbenchRecord>(&*caller.reads, &caller.user, &id, Access::Read)?;
    Ok(HttpResponse::Ok().json(workbench_view(&*caller.reads, &w)?))
}

#[utoipa::path(patch, path = "/api/v1/workbenches/{id}", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = WorkbenchPatch,
    responses((status = 200, body = WorkbenchView), (status = 404, body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[patch("/api/v1/workbenches/{id}")]
pub async fn update_workbench(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<WorkbenchPatch>,
) -> Result<HttpResponse, AppError> {
    let body = body.0;
    let name = body
        .name
        .map(|n| Name::parse(&n, "name").map(Name::into_inner))
        .transpose()?;
    let w = ws::load::<WorkbenchRecord>(&*caller.reads, &caller.user, &id, Access::Write)?;
    let command = UpdateWorkbench {
        id: w.id,
        name,
        default_brand_kit_id: body.default_brand_kit_id,
    };
    let w = state.workspaces.change(w.user_id, command).await?;
    Ok(HttpResponse::Ok().json(workbench_view(&state.store, &w)?))
}

/// Delete a workbench with its projects and their assets, in one atomic write.
#[utoipa::path(delete, path = "/api/v1/workbenches/{id}", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::views::ErrorBody)))]
#[delete("/api/v1/workbenches/{id}")]
pub async fn delete_workbench(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let w = ws::load::<WorkbenchRecord>(&*caller.reads, &caller.user, &id, Access::Write)?;
    state
        .workspaces
        .change(w.user_id, DeleteWorkbench { id: w.id })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// --- Projects -----------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreate {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    workbench_id: Uuid,
    brand_kit_id: Option<Uuid>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// `null` clears the override.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Uuid>)]
    brand_kit_id: Option<Option<Uuid>>,
}

/// Projects: of one workbench (`workbench_id`), else the caller's (staff: everyone's).
#[utoipa::path(get, path = "/api/v1/projects", tag = "workspace", security(("bearer" = [])),
    params(("workbench_id" = Option<Uuid>, Query), ("user_id" = Option<Uuid>, Query, description = "staff only"), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Listing<ProjectView>), (status = 404, body = crate::views::ErrorBody)))]
#[get("/api/v1/projects")]
pub async fn list_projects(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    let page = Page::with_filters(&req, &["workbench_id", "user_id"])?;
    let (items, next_cursor) = match page.uuid_filter("workbench_id")? {
        Some(wb) => {
            let w = ws::load_id::<WorkbenchRecord>(&*caller.reads, &caller.user, wb, Access::Read)?;
            ws::page_by_index::<ProjectRecord>(
                &*caller.reads,
                Table::ProjectsByWorkbench,
                w.id,
                &page,
            )?
        }
        None => ws::page_owned::<ProjectRecord>(
            &*caller.reads,
            &caller.user,
            Table::ProjectsByUser,
            &page,
        )?,
    };
    let items = ws::only_visible(&*caller.reads, items)?
        .iter()
        .map(|p| project_view(&*caller.reads, p))
        .collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(Listing { items, next_cursor }))
}

/// Create a project in one of the caller's workbenches; its `user_id` is the workbench's owner.
#[utoipa::path(post, path = "/api/v1/projects", tag = "workspace", security(("bearer" = [])), request_body = ProjectCreate,
    responses((status = 201, body = ProjectView), (status = 409, body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/projects")]
pub async fn create_project(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<ProjectCreate>,
) -> Result<HttpResponse, AppError> {
    let body = body.0;
    let name = Name::parse(&body.name, "name")?.into_inner();
    // The workbench must be the caller's own; anyone else's reads as nonexistent.
    let owner = match state
        .store
        .get::<WorkbenchRecord>(&storage::keys::id(body.workbench_id))?
    {
        Some(w) if w.user_id == caller.user.id || caller.user.role == Role::Admin => w.user_id,
        _ => {
            return Err(AppError::validation(
                "workbench_id",
                "does not name one of your workbenches",
            ))
        }
    };
    let command = CreateProject {
        workbench_id: body.workbench_id,
        name,
        brand_kit_id: body.brand_kit_id,
    };
    let p = state.workspaces.change(owner, command).await?;
    Ok(HttpResponse::Created().json(project_view(&state.store, &p)?))
}

#[utoipa::path(get, path = "/api/v1/projects/{id}", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = ProjectView), (status = 404, body = crate::views::ErrorBody)))]
#[get("/api/v1/projects/{id}")]
pub async fn get_project(caller: Caller, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let p = ws::load::<ProjectRecord>(&*caller.reads, &caller.user, &id, Access::Read)?;
    Ok(HttpResponse::Ok().json(project_view(&*caller.reads, &p)?))
}

#[utoipa::path(patch, path = "/api/v1/projects/{id}", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = ProjectPatch,
    responses((status = 200, body = ProjectView), (status = 404, body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[patch("/api/v1/projects/{id}")]
pub async fn update_project(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<ProjectPatch>,
) -> Result<HttpResponse, AppError> {
    let body = body.0;
    let name = body
        .name
        .map(|n| Name::parse(&n, "name").map(Name::into_inner))
        .transpose()?;
    let p = ws::load::<ProjectRecord>(&*caller.reads, &caller.user, &id, Access::Write)?;
    let p = state
        .workspaces
        .change(
            p.user_id,
            UpdateProject {
                id: p.id,
                name,
                brand_kit_id: body.brand_kit_id,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(project_view(&state.store, &p)?))
}

/// Delete a project and its assets.
#[utoipa::path(delete, path = "/api/v1/projects/{id}", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::views::ErrorBody)))]
#[delete("/api/v1/projects/{id}")]
pub async fn delete_project(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let p = ws::load::<ProjectRecord>(&*caller.reads, &caller.user, &id, Access::Write)?;
    state
        .workspaces
        .change(p.user_id, DeleteProject { id: p.id })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// --- Brand kits ---------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandKitCreate {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[serde(default)]
    #[schema(max_items = 50)]
    colors: Vec<ColorInput>,
    #[serde(default)]
    #[schema(max_items = 20)]
    fonts: Vec<FontInput>,
    /// Relative object-store paths.
    #[serde(default)]
    #[schema(max_items = 20)]
    logos: Vec<String>,
    #[serde(default)]
    is_default: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandKitPatchBody {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[schema(max_items = 50)]
    colors: Option<Vec<ColorInput>>,
    #[schema(max_items = 20)]
    fonts: Option<Vec<FontInput>>,
    #[schema(max_items = 20)]
    logos: Option<Vec<String>>,
    is_default: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/brand-kits", tag = "workspace", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("user_id" = Option<Uuid>, Query, description = "staff only")),
    responses((status = 200, body = Listing<BrandKitView>)))]
#[get("/api/v1/brand-kits")]
pub async fn list_brand_kits(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    let page = Page::with_filters(&req, &["user_id"])?;
    let (items, next_cursor) = ws::page_owned::<BrandKitRecord>(
        &*caller.reads,
        &caller.user,
        Table::BrandKitsByUser,
        &page,
    )?;
    Ok(HttpResponse::Ok().json(Listing {
        items: items.iter().map(BrandKitView::from).collect(),
        next_cursor,
    }))
}

/// Create a brand kit (tiers pro, team, enterprise). `is_default: true` clears the caller's other
/// default in the same write.
#[utoipa::path(post, path = "/api/v1/brand-kits", tag = "workspace", security(("bearer" = [])), request_body = BrandKitCreate,
    responses((status = 201, body = BrandKitView), (status = 403, description = "tier_required", body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/brand-kits")]
pub async fn create_brand_kit(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<BrandKitCreate>,
) -> Result<HttpResponse, AppError> {
    let b = body.0;
    let command = CreateBrandKit {
        name: Name::parse(&b.name, "name")?.into_inner(),
        colors: domain::parse_colors(b.colors)?,
        fonts: domain::parse_fonts(b.fonts)?,
        logos: domain::parse_logos(b.logos)?,
        is_default: b.is_default,
        tier_exempt: caller.user.role == Role::Admin,
    };
    let k = state.workspaces.change(caller.user.id, command).await?;
    Ok(HttpResponse::Created().json(BrandKitView::from(&k)))
}

#[utoipa::path(get, path = "/api/v1/brand-kits/{id}", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = BrandKitView), (status = 404, body = crate::views::ErrorBody)))]
#[get("/api/v1/brand-kits/{id}")]
pub async fn get_brand_kit(
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let k = ws::load::<BrandKitRecord>(&*caller.reads, &caller.user, &id, Access::Read)?;
    Ok(HttpResponse::Ok().json(BrandKitView::from(&k)))
}

#[utoipa::path(patch, path = "/api/v1/brand-kits/{id}", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = BrandKitPatchBody,
    responses((status = 200, body = BrandKitView), (status = 404, body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[patch("/api/v1/brand-kits/{id}")]
pub async fn update_brand_kit(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<BrandKitPatchBody>,
) -> Result<HttpResponse, AppError> {
    let b = body.0;
    let mut patch = UpdateBrandKit {
        id: Uuid::nil(), // set once the kit is loaded: field errors answer before a 404
        name: b
            .name
            .map(|n| Name::parse(&n, "name").map(Name::into_inner))
            .transpose()?,
        colors: b.colors.map(domain::parse_colors).transpose()?,
        fonts: b.fonts.map(domain::parse_fonts).transpose()?,
        logos: b.logos.map(domain::parse_logos).transpose()?,
        is_default: b.is_default,
    };
    let k = ws::load::<BrandKitRecord>(&*caller.reads, &caller.user, &id, Access::Write)?;
    patch.id = k.id;
    let k = state.workspaces.change(k.user_id, patch).await?;
    Ok(HttpResponse::Ok().json(BrandKitView::from(&k)))
}

/// Delete a brand kit; 409 `brand_kit_in_use` while a workbench default or a project uses it.
#[utoipa::path(delete, path = "/api/v1/brand-kits/{id}", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::views::ErrorBody), (status = 409, description = "brand_kit_in_use", body = crate::views::ErrorBody)))]
#[delete("/api/v1/brand-kits/{id}")]
pub async fn delete_brand_kit(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let k = ws::load::<BrandKitRecord>(&*caller.reads, &caller.user, &id, Access::Write)?;
    state
        .workspaces
        .change(k.user_id, DeleteBrandKit { id: k.id })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// --- Assets -------------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetCreate {
    #[schema(example = "image", pattern = "^(image|video|audio|document|other)$")]
    kind: String,
    /// Object-store path, relative: `[A-Za-z0-9._-]` segments, no `..`.
    #[schema(min_length = 1, max_length = 1024)]
    path: String,
    #[schema(example = "image/png", max_length = 127)]
    mime: String,
    /// At most 10 GiB.
    #[schema(maximum = 10_737_418_240_u64)]
    size: u64,
}

#[utoipa::path(get, path = "/api/v1/projects/{id}/assets", tag = "workspace", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Listing<AssetView>), (status = 404, body = crate::views::ErrorBody)))]
#[get("/api/v1/projects/{id}/assets")]
pub async fn list_assets(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let page = Page::from_query(&req)?;
    let p = ws::load::<ProjectRecord>(&*caller.reads, &caller.user, &id, Access::Read)?;
    let (items, next_cursor) =
        ws::page_by_index::<AssetRecord>(&*caller.reads, Table::AssetsByProject, p.id, &page)?;
    Ok(HttpResponse::Ok().json(Listing {
        items: items.iter().map(AssetView::from).collect(),
        next_cursor,
    }))
}

/// Record an asset (an uploaded object) in a project.
#[utoipa::path(post, path = "/api/v1/projects/{id}/assets", tag = "workspace", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = AssetCreate,
    responses((status = 201, body = AssetView), (status = 404, body = crate::views::ErrorBody), (status = 409, body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/projects/{id}/assets")]
pub async fn create_asset(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<AssetCreate>,
) -> Result<HttpResponse, AppError> {
    let b = body.0;
    let asset = NewAsset {
        kind: domain::parse_asset_kind(&b.kind)?,
        path: domain::parse_object_path(&b.path, "path")?,
        mime: domain::parse_mime(&b.mime)?,
        size: if b.size <= domain::ASSET_SIZE_MAX {
            b.size
        } else {
            return Err(AppError::validation("size", "at most 10 GiB"));
        },
        generation_request_id: None,
    };
    let p = ws::load::<ProjectRecord>(&*caller.reads, &caller.user, &id, Access::Write)?;
    let a = state
        .workspaces
        .change(
            p.user_id,
            CreateAsset {
                project_id: p.id,
                asset,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(AssetView::from(&a)))
}

#[utoipa::path(delete, path = "/api/v1/projects/{id}/assets/{asset_id}", tag = "workspace", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("asset_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::views::ErrorBody)))]
#[delete("/api/v1/projects/{id}/assets/{asset_id}")]
pub async fn delete_asset(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (project, asset) = path.into_inner();
    let p = ws::load::<ProjectRecord>(&*caller.reads, &caller.user, &project, Access::Write)?;
    state
        .workspaces
        .change(
            p.user_id,
            DeleteAsset {
                project_id: p.id,
                id: parse_id(&asset)?,
            },
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
