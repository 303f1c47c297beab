"""The price book: what proposals and deals may be priced from."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.auth import Principal
from api.deps import ReadSessionDep, require
from core.enums import Role
from core.schemas import ProductRead
from deals import flow

router = APIRouter(prefix="/v1/products", tags=["deals"])


@router.get("", response_model=list[ProductRead], summary="The price book: products with their prices, by name")
def list_products(session: ReadSessionDep, _: Annotated[Principal, Depends(require(Role.CLOSER, Role.MANAGER))]):
    return [ProductRead.model_validate(p) for p in flow.price_book(session)]
