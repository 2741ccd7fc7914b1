"""HTTP prediction service (optional ``serve`` extra: Starlette + uvicorn): ``create_app(predictor, ServeConfig())``.

The modules import Starlette, so import them only when serving; ``darknet_torch.client`` needs nothing extra.
"""
