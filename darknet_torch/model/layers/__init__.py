"""The nn.Modules that Darknet cfg sections become (heads live in darknet_torch.model.heads)."""
