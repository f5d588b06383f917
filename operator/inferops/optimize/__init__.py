"""The optimization Job: `inferops optimize` (see cli.py), one module per recipe.

    quantize_int8_dynamic, quantize_int8_static, fp16, prune, distill, tensorrt   the recipes
    pipeline.optimize(Options) -> OptimizationReport                               the whole run
    evaldata     the eval data format          measure     size, latency, metric
    dense_chain  MLPs in numpy <-> ONNX        bert_export torch-free BERT -> ONNX
"""
