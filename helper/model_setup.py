"""A model made ready to train or to teach: device, memory format, compilation."""
import torch


def prepare_model(model, opt, device):
    """The model on `device`, channels_last and compiled as the options say (student and teacher)."""
    model = model.to(device)
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if opt.compile:
        # Static shapes: the last partial batch and the test batches get graphs of their own
        # instead of turning the main one dynamic, and CUDA graphs (reduce-overhead) need that.
        model.compile(mode=opt.compile_mode, dynamic=False)
    return model
