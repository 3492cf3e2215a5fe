module llmserve

go 1.19
