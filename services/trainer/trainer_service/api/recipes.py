"""``GET /v1/recipes``: the training recipes a run may name, with every value they set."""

from __future__ import annotations

from fastapi import APIRouter

from trainer_service.api.schemas import RecipeList, RecipePublic
from trainer_service.runs.config import recipe_values
from trainer_service.runs.recipes import DEFAULT_RECIPE, RECIPES

router = APIRouter(prefix="/v1/recipes", tags=["recipes"])


@router.get("", response_model=RecipeList, summary="Training recipes and the values they set")
def list_recipes() -> RecipeList:
    return RecipeList(
        default=DEFAULT_RECIPE,
        items=[
            RecipePublic(name=r.name, summary=r.summary, values=recipe_values(r.name))
            for r in RECIPES.values()
        ],
    )
