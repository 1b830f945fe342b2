"""Model types whose transformers configuration class declares a tensor-parallel plan
(``base_model_tp_plan``): the models ``from_pretrained(tp_plan="auto")`` can split. Read from
transformers 5.25.0 (every CONFIG_MAPPING class with a non-empty base_model_tp_plan);
tests/integration/test_hf_tp_plans.py checks it against the installed library."""

TRANSFORMERS_VERSION = "5.25.0"
TP_PLAN_MODEL_TYPES = frozenset((
    "afmoe", "apertus", "apertus1p5_text", "arcee", "aria_text", "axk1", "axk2", "bailing_hybrid", "bamba",
    "beam", "codegen", "cohere", "cohere2", "cohere2_moe", "cohere_compass_text", "cosmos3_edge_text", "cwm",
    "deepseek_ocr2_encoder", "deepseek_ocr2_text", "deepseek_v2", "deepseek_v3", "deepseek_v32",
    "deepseek_v4", "diffllama", "diffusion_gemma_text", "doge", "dory", "dots1", "dots3_note_text",
    "embedding_gemma2_text", "emu3_text_model", "ernie4_5", "ernie4_5_moe", "ernie4_5_vl_moe_text",
    "ernie4_5_vl_moe_vision", "esmc", "eurobert", "exaone", "exaone4", "exaone_moe", "falcon_h1", "flex_olmo",
    "flint", "gemma", "gemma2", "gemma3_text", "gemma3n_text", "gemma4_text", "gemma4_unified_text",
    "gemma4_vision", "glm", "glm4", "glm4_moe", "glm4_moe_lite", "glm4v_moe_text", "glm4v_text",
    "glm5_next_text", "glm_image_text", "glm_moe_dsa", "glm_ocr_text", "gpt_neox", "gpt_oss", "gptj",
    "granite", "granite4_vision_text", "granite_docling_text", "granite_swa", "granitemoe", "granitemoe_swa",
    "granitemoehybrid", "granitemoeshared", "helium", "higgs_audio_v2", "hrm_text", "hunyuan_v1_dense",
    "hunyuan_v1_moe", "hunyuan_vl_text", "hy_v3", "hy_v4", "hy_v4_vl_text", "hyperclovax",
    "inkling2_loop_text", "inkling2_text", "inkling_text", "internlm3", "iquestcoder", "jais2", "jamba",
    "kimi_linear", "kolibri1", "kolibri1_1", "laguna", "lara_mini", "lfm2", "lfm2_moe", "lfm3", "llama",
    "llama4", "llama4_text", "llama4_vision_model", "longcat_flash", "mellum", "mimo_v2_flash", "minicpm3",
    "minicpm5_moe", "minimax", "minimax_m2", "minimax_m3_vl_text", "ministral", "ministral3", "mistral",
    "mistral4", "mistral_large4_text", "mixtral", "muse_glimmer", "muse_glimmer_assistant",
    "muse_glimmer_text", "muse_glimmer_vision", "muse_spark", "muse_spark_text", "nanochat", "nemotron",
    "nemotron_h", "neomme", "olmo", "olmo2", "olmo3", "olmo_hybrid", "olmoe", "paddleocr_vl_text",
    "param2moe", "phi", "phi3", "phi4_multimodal", "phimoe", "qwen2", "qwen2_5_omni_text", "qwen2_5_vl_text",
    "qwen2_moe", "qwen2_vl_text", "qwen3", "qwen3_5_moe_text", "qwen3_5_text", "qwen3_moe", "qwen3_next",
    "qwen3_omni_moe_talker_code_predictor", "qwen3_omni_moe_talker_text", "qwen3_omni_moe_text",
    "qwen3_vl_moe_text", "qwen3_vl_text", "qwen4_exp_text", "sarvam_mla", "sarvam_moe", "seed_oss", "smollm3",
    "solar_open", "starcoder2", "step3p5", "t5_gemma_module", "t5gemma2_decoder", "t5gemma2_text",
    "ultrabert", "unlimited_ocr_text", "vaultgemma", "voxtral_realtime_text", "youtu",
))
