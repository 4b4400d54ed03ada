namespace ModelGen;

/// <summary>
/// One input of a model. Generic code (Fit, Evaluate) sees a sample's inputs side by side in one row of
/// <see cref="IPredictor.InputSize"/> floats; this input occupies <see cref="Size"/> of them from <see cref="Offset"/>.
/// </summary>
public sealed record ModelInput(string Name, int Size, int Offset, string Shape);

/// <summary>
/// One output of a model, with the loss that trains it (Keras' <c>compile(loss={name: ...}, loss_weights={name: ...})</c>).
/// Outputs sit side by side in a row of <see cref="IPredictor.OutputSize"/> floats, their targets in a row of
/// <see cref="IModel.TargetSize"/>. Its <see cref="Size"/> floats per sample are <see cref="Rows"/> rows of <see cref="Units"/>
/// (the last axis): the loss and the accuracy reduce each row over the last axis and average the rows, as Keras' do, so a
/// sequence output is scored step by step (a sparse categorical target holds one class index per row).
/// </summary>
public sealed record ModelOutput(string Name, int Size, int Offset, string Shape, Loss Loss, float LossWeight, int TargetSize, int TargetOffset, int Units)
{
    /// <summary>Rows per sample: 1 for a flat output, the steps of a sequence, the pixels of an image.</summary>
    public int Rows => Size / Units;

    /// <summary>
    /// The shape of this output's targets as Keras states it: the output's own, less the last axis for sparse class indices
    /// (<c>(None, 5)</c> for a <c>(None, 5, 3)</c> output, <c>(None,)</c> for a <c>(None, 10)</c> one).
    /// </summary>
    public string TargetShape => Loss == Loss.SparseCategoricalCrossentropy ? WithoutLastAxis(Shape) : Shape;

    /// <summary>"(None, 5, 3)" to "(None, 5)"; one axis left keeps Python's one-element tuple comma: "(None, 10)" to "(None,)".</summary>
    private static string WithoutLastAxis(string shape)
    {
        int last = shape.LastIndexOf(',');
        if (last < 0) return shape;
        bool oneAxisLeft = shape.IndexOf(',') == last;
        return shape.Substring(0, last) + (oneAxisLeft ? ",)" : ")");
    }
}
