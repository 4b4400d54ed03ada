using ModelGen;

// MLPs of growing width for the scaling curve: input w -> Dense w relu -> Dense w relu -> Dense 10 softmax,
// from about 10^2 to 10^7 parameters. One class per width: shapes are compile-time constants.

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ScalingMlp8
{
    [Input(8)] Input x;
    [Dense(8, Activation.Relu)] Dense hidden1;
    [Dense(8, Activation.Relu)] Dense hidden2;
    [Dense(10, Activation.Softmax)] Dense output;
}

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ScalingMlp16
{
    [Input(16)] Input x;
    [Dense(16, Activation.Relu)] Dense hidden1;
    [Dense(16, Activation.Relu)] Dense hidden2;
    [Dense(10, Activation.Softmax)] Dense output;
}

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ScalingMlp32
{
    [Input(32)] Input x;
    [Dense(32, Activation.Relu)] Dense hidden1;
    [Dense(32, Activation.Relu)] Dense hidden2;
    [Dense(10, Activation.Softmax)] Dense output;
}

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ScalingMlp64
{
    [Input(64)] Input x;
    [Dense(64, Activation.Relu)] Dense hidden1;
    [Dense(64, Activation.Relu)] Dense hidden2;
    [Dense(10, Activation.Softmax)] Dense output;
}

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ScalingMlp128
{
    [Input(128)] Input x;
    [Dense(128, Activation.Relu)] Dense hidden1;
    [Dense(128, Activation.Relu)] Dense hidden2;
    [Dense(10, Activation.Softmax)] Dense output;
}

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ScalingMlp256
{
    [Input(256)] Input x;
    [Dense(256, Activation.Relu)] Dense hidden1;
    [Dense(256, Activation.Relu)] Dense hidden2;
    [Dense(10, Activation.Softmax)] Dense output;
}

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ScalingMlp512
{
    [Input(512)] Input x;
    [Dense(512, Activation.Relu)] Dense hidden1;
    [Dense(512, Activation.Relu)] Dense hidden2;
    [Dense(10, Activation.Softmax)] Dense output;
}

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ScalingMlp1024
{
    [Input(1024)] Input x;
    [Dense(1024, Activation.Relu)] Dense hidden1;
    [Dense(1024, Activation.Relu)] Dense hidden2;
    [Dense(10, Activation.Softmax)] Dense output;
}

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ScalingMlp2048
{
    [Input(2048)] Input x;
    [Dense(2048, Activation.Relu)] Dense hidden1;
    [Dense(2048, Activation.Relu)] Dense hidden2;
    [Dense(10, Activation.Softmax)] Dense output;
}

public static class ScalingModels
{
    public static readonly int[] Widths = { 8, 16, 32, 64, 128, 256, 512, 1024, 2048 };

    public static IModel Create(int width, int maxBatchSize) => width switch
    {
        8 => new ScalingMlp8(maxBatchSize),
        16 => new ScalingMlp16(maxBatchSize),
        32 => new ScalingMlp32(maxBatchSize),
        64 => new ScalingMlp64(maxBatchSize),
        128 => new ScalingMlp128(maxBatchSize),
        256 => new ScalingMlp256(maxBatchSize),
        512 => new ScalingMlp512(maxBatchSize),
        1024 => new ScalingMlp1024(maxBatchSize),
        2048 => new ScalingMlp2048(maxBatchSize),
        _ => throw new ArgumentOutOfRangeException(nameof(width)),
    };
}
